"""The one LLM interface every model call in OpenK2 goes through (docs/architecture.md).

Rephraser, user and tool simulators, judge, critic and the RL policy hold an `LLM` and never learn
which back end it is: an in-process OpenK2 checkpoint, a transformers model (the embedded teacher),
or an OpenAI-compatible endpoint (vLLM, SGLang, a hosted API, `openk2 serve`).

    llm.chat(messages, tools, sampling)            -> Completion    one conversation
    llm.chat_batch([chat_request(...), ...])       -> [Completion]  many, generated together
    await llm.achat(chat_request(...))             -> Completion    many concurrent callers
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from openk2.chat import ChatFormatError, Message, ToolSpec
from openk2.llm.types import ChatRequest, Completion, SamplingParams, ToolChoice, chat_request


class ModelUnavailable(RuntimeError):
    """The model cannot answer now (no connection, timeout, overload, shutting down); a retry later may work."""


class Overloaded(ModelUnavailable):
    """The request queue is full; retry later."""


class ShutDown(ModelUnavailable):
    """The engine has stopped and takes no more requests."""


class LLM(ABC):
    """A chat model. Back ends implement `chat_batch`; `achat` defaults to a one-request batch."""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The name replies carry in `Completion.model` (and the served model id)."""

    @abstractmethod
    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order; request errors raise ChatFormatError naming the field."""

    async def achat(self, request: ChatRequest) -> Completion:
        """The completion of one request without blocking the event loop."""
        return (await asyncio.to_thread(self.chat_batch, [request]))[0]

    def continuation_ids(
        self,
        history: Sequence[Message],
        new_messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
    ) -> list[int]:
        """The token ids that `new_messages` (tool results, a user turn) add after `history`, up to and
        including the generation prompt of the next assistant turn.

        A token-level rollout appends these to its running sequence (history's last reply closed by its
        sampled end-of-turn token) and sends the result as `prompt_token_ids`. Only in-process back ends
        know their tokenizer; an endpoint cannot continue token ids.
        """
        raise ChatFormatError(
            f"prompt_token_ids: {self.model_name} is not an in-process model; token-level rollouts "
            "(RL with kept tokens) need the checkpoint or transformers back end"
        )

    def close(self) -> None:
        """Stop workers and release connections; nothing to do for most back ends."""
        return None

    def chat(
        self,
        messages: Sequence[Message | Mapping[str, Any]],
        tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None,
        sampling: SamplingParams | None = None,
        tool_choice: ToolChoice | Mapping[str, Any] = "auto",
    ) -> Completion:
        """The assistant's reply to `messages`; plain OpenAI dicts are accepted and validated."""
        return self.chat_batch([chat_request(messages, tools, sampling, tool_choice)])[0]
