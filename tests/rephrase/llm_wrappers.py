"""Stand-in models for the pipeline tests: wrappers around the real teacher (one records every call, one
corrupts replies), a model that refuses every request, and scripted ones for tests about the pipeline alone
(scheduling, interruption), not about a model."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from openk2.chat import Message
from openk2.llm import LLM, ChatRequest, Completion
from tests.gym.scripted import ScriptedLLM


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


def passage(messages: Sequence[Message]) -> str:
    """The chunk a rewrite request asks about: the user turn after the template's first line."""
    return messages[-1].text.split("\n\n", 1)[1]


def echo_rewriter() -> ScriptedLLM:
    """Returns each chunk unchanged: a rewrite that passes every fidelity check (the copy check aside)."""
    return ScriptedLLM(lambda request: passage(request.messages), "echo")


def approving_judge() -> ScriptedLLM:
    return ScriptedLLM(
        lambda request: "Score: 5\nReason: the same facts in the same order.", "approving-judge"
    )


class RefusingLLM(LLM):
    """Fails the test if asked anything: proves that a run was answered from the reply cache alone."""

    model_name = "SmolLM2-135M-Instruct"

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        raise AssertionError(f"the model was asked {len(requests)} request(s) the cache should have answered")
