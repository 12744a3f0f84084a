"""Model replies cached by request, so a resumed or extended run asks the model nothing twice.

Sample views can also set the tool choice of requests that carry tools (e.g. "required" for BFCL on a
model that only calls tools under constrained decoding). The key is the model's identity, the sample index (sample i of a task at temperature > 0 is its own
draw, not a copy of sample 0), the messages, tools, tool choice and sampling parameters. A request
the model cannot answer now (`ModelUnavailable`) is remembered so that the runner can stop the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from openk2.io import ReplyCache
from openk2.llm import LLM, ChatRequest, Completion, ModelUnavailable
from openk2.llm.types import NamedToolChoice, ToolChoiceMode


@dataclass
class _Shared:
    cache: ReplyCache
    identity: str
    unavailable: list[ModelUnavailable] = field(default_factory=list)


class CachedLLM(LLM):
    """`inner` behind the reply cache; `for_sample(i)` gives the view that sample i's rollout talks to."""

    def __init__(self, inner: LLM, cache: ReplyCache, identity: str) -> None:
        self.inner = inner
        self._shared = _Shared(cache, identity)
        self._sample: int | None = None
        self._tool_choice: ToolChoiceMode = "auto"

    def for_sample(self, sample: int, tool_choice: ToolChoiceMode = "auto") -> CachedLLM:
        """The view sample i's rollout talks to; `tool_choice` replaces "auto" on requests with tools."""
        view = CachedLLM.__new__(CachedLLM)
        view.inner, view._shared, view._sample, view._tool_choice = (
            self.inner,
            self._shared,
            sample,
            tool_choice,
        )
        return view

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def unavailable(self) -> ModelUnavailable | None:
        """The first `ModelUnavailable` any view met, if one did."""
        return self._shared.unavailable[0] if self._shared.unavailable else None

    @property
    def cache(self) -> ReplyCache:
        return self._shared.cache

    def key(self, request: ChatRequest) -> str:
        choice = request.tool_choice
        return ReplyCache.key(
            model=self._shared.identity,
            sample=self._sample,
            messages=[message.model_dump(mode="json", exclude_none=True) for message in request.messages],
            tools=[tool.to_openai() for tool in request.tools or ()],
            tool_choice=choice.model_dump() if isinstance(choice, NamedToolChoice) else choice,
            sampling=request.sampling.model_dump(mode="json"),
            prompt_token_ids=list(request.prompt_token_ids) if request.prompt_token_ids else None,
        )

    async def achat(self, request: ChatRequest) -> Completion:
        if request.tools and request.tool_choice == "auto" and self._tool_choice != "auto":
            request = dataclasses.replace(request, tool_choice=self._tool_choice)
        key = self.key(request)
        cached = self._shared.cache.get(key)
        if cached is not None:
            return Completion.model_validate(cached["completion"])
        try:
            completion = await self.inner.achat(request)
        except ModelUnavailable as error:
            self._shared.unavailable.append(error)
            raise
        self._shared.cache.put(key, {"completion": completion.model_dump(mode="json")})
        return completion

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        # the runner only uses `achat`; a batch call goes to the model as it is
        return self.inner.chat_batch(requests)

    def close(self) -> None:
        self.inner.close()
