"""A scripted stand-in model for pipeline tests: its replies are a function of the conversation.

Tests that use it are about the gym's plumbing (rollout, environments, scoring), not about a model.
"""

from collections.abc import Callable, Sequence

from openk2.chat import Message
from openk2.llm import LLM, ChatRequest, Completion, Usage

Script = Callable[[ChatRequest], Message | str]


class ScriptedLLM(LLM):
    def __init__(self, script: Script, name: str = "scripted") -> None:
        self.script = script
        self.name = name
        self.requests: list[ChatRequest] = []

    @property
    def model_name(self) -> str:
        return self.name

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        completions = []
        for request in requests:
            self.requests.append(request)
            reply = self.script(request)
            message = Message(role="assistant", content=reply) if isinstance(reply, str) else reply
            completions.append(
                Completion(
                    model=self.name,
                    message=message,
                    finish_reason="tool_calls" if message.tool_calls else "stop",
                    usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
                )
            )
        return completions


def fixed(text: str) -> ScriptedLLM:
    """Always the same reply."""
    return ScriptedLLM(lambda request: text)
