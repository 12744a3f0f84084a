"""Wrappers around the real teacher for the pipeline tests: one records every call, one corrupts replies."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from openk2.chat import Message
from openk2.llm import LLM, ChatRequest, Completion


@dataclass
class Call:
    messages: tuple[Message, ...]
    reply: str


@dataclass
class RecordingLLM(LLM):
    """Passes every request to `inner` and keeps (messages, reply text), optionally rewriting the reply."""

    inner: LLM
    edit_reply: Callable[[ChatRequest, str], str] = lambda request, reply: reply
    calls: list[Call] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return [
            self._edited(request, reply)
            for request, reply in zip(requests, self.inner.chat_batch(requests), strict=True)
        ]

    async def achat(self, request: ChatRequest) -> Completion:
        return self._edited(request, await self.inner.achat(request))

    def _edited(self, request: ChatRequest, completion: Completion) -> Completion:
        text = self.edit_reply(request, completion.message.text)
        self.calls.append(Call(request.messages, text))
        message = completion.message.model_copy(update={"content": text})
        return completion.model_copy(update={"message": message})


class RefusingLLM(LLM):
    """Fails the test if asked anything: proves that a run was answered from the reply cache alone."""

    model_name = "SmolLM2-135M-Instruct"

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        raise AssertionError(f"the model was asked {len(requests)} request(s) the cache should have answered")
