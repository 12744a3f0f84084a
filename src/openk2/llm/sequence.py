"""One request inside the engine: its tokens, budget, stop strings, sampling and grammar, as it generates.

The scheduler feeds a `Sequence` one sampled token at a time (`accept`); the sequence decides when it
is finished (an end-of-turn token, a stop string, its budget, a completed grammar's end, or its
caller cancelling) and hands each step's new text to its caller through `deliver`.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from openk2.llm.grammar import GrammarCompiler, GrammarPlan, TokenMatcher, triggered_matcher
from openk2.llm.sampling import Choice, RowSampler
from openk2.llm.text_stream import ReplyText
from openk2.llm.types import SamplingParams

EndReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class GenerationRequest:
    """What the scheduler needs to generate one reply; the engine builds it from a chat request."""

    prompt_ids: list[int]
    forced_ids: list[int]  # continue from these (a tool-choice prefix); part of the reply, not sampled
    budget: int  # tokens the model may generate after the forced ones
    sampling: SamplingParams
    end_ids: frozenset[int]  # end-of-turn tokens: kept with the reply, not part of its text
    grammar: GrammarPlan | None = None


@dataclass
class GenerationResult:
    """A finished (or cancelled) reply, token for token."""

    prompt_ids: list[int]
    forced_ids: list[int]
    token_ids: list[int]  # generated after the forced ids, the end-of-turn token included
    logprobs: list[float]  # forced ids first, then generated, at the sampling temperature (when asked for)
    top_logprobs: list[dict[int, float]] | None
    text: str  # the generated text (forced ids not included), cut at a stop string
    finish_reason: EndReason
    cached_prompt_tokens: int  # prompt tokens whose cache came from the prefix cache


@dataclass(frozen=True)
class StepOutput:
    """What one step added to a reply; `result` is set on its last step, `error` when it failed."""

    token_ids: tuple[int, ...]
    text: str
    result: GenerationResult | None = None
    error: BaseException | None = None


@dataclass
class Sequence:
    request: GenerationRequest
    deliver: Callable[[StepOutput], None]
    decode: Callable[[list[int]], str]
    sampler: RowSampler
    text: ReplyText
    matcher: TokenMatcher | None = None
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)
    cached_prompt_tokens: int = 0
    finish_reason: EndReason | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(
        cls,
        request: GenerationRequest,
        deliver: Callable[[StepOutput], None],
        decode: Callable[[list[int]], str],
        device: torch.device,
    ) -> "Sequence":
        sampler = RowSampler.create(request.sampling, request.prompt_ids + request.forced_ids, device)
        return cls(request, deliver, decode, sampler, ReplyText(decode, request.sampling.stop))

    @property
    def context(self) -> list[int]:
        """Every token the model has read or written: prompt, forced, generated."""
        return self.request.prompt_ids + self.request.forced_ids + self.generated

    def begin_grammar(self, compiler: GrammarCompiler | None, encode: Callable[[str], list[int]]) -> None:
        """Start the grammar now unless it waits for a trigger."""
        plan = self.request.grammar
        if plan is not None and plan.trigger is None and compiler is not None:
            self.matcher = compiler.matcher(plan)

    def allowed(self) -> torch.Tensor | None:
        return None if self.matcher is None else self.matcher.allowed()

    def accept(
        self, choice: Choice, compiler: GrammarCompiler | None, encode: Callable[[str], list[int]]
    ) -> StepOutput:
        """Add one sampled token; returns what the caller should receive."""
        token = choice.token
        self.generated.append(token)
        if choice.logprob is not None:
            self.logprobs.append(choice.logprob)
        if choice.top_logprobs is not None:
            self.top_logprobs.append(choice.top_logprobs)
        ended = token in self.request.end_ids
        if self.matcher is not None and not ended:
            self.matcher.consume([token])
        if not ended:
            self.text.push(token)
            self._maybe_trigger(compiler, encode)
        if ended or self.text.stopped:
            self.finish_reason = "stop"
        elif len(self.generated) >= self.request.budget:
            self.finish_reason = "length"
        return self._output((token,))

    def _maybe_trigger(self, compiler: GrammarCompiler | None, encode: Callable[[str], list[int]]) -> None:
        plan = self.request.grammar
        if self.matcher is not None or plan is None or plan.trigger is None or compiler is None:
            return
        at = self.text.text.find(plan.trigger)
        if at >= 0:
            self.matcher = triggered_matcher(compiler, plan, self.text.text[at + len(plan.trigger) :], encode)

    def cancel(self) -> StepOutput:
        self.finish_reason = "cancelled"
        return self._output(())

    def _output(self, token_ids: tuple[int, ...]) -> StepOutput:
        done = self.finish_reason is not None
        text = self.text.release(final=done)
        result = None
        if done:
            assert self.finish_reason is not None
            result = GenerationResult(
                prompt_ids=self.request.prompt_ids,
                forced_ids=self.request.forced_ids,
                token_ids=self.generated,
                logprobs=self.logprobs,
                top_logprobs=self.top_logprobs if self.request.sampling.top_logprobs else None,
                text=self.text.text,
                finish_reason=self.finish_reason,
                cached_prompt_tokens=self.cached_prompt_tokens,
            )
        return StepOutput(token_ids, text, result)
