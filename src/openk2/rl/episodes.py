"""One RL episode seen by the policy: a gym rollout whose replies may span iterations (partial rollouts).

K1.5's partial rollouts (K2 report §3.3): an episode may generate only so many tokens per iteration; a reply
that needs more is paused and continued in the next iteration by the then-current weights, so a few long
replies no longer hold up a whole iteration. Each episode talks to the policy through its own `EpisodeLLM`:

- it counts the episode's tokens this iteration and, when they run out mid-reply, keeps the reply's tokens
  and log-probs so far and raises `EpisodePaused`, which ends the gym rollout (it is not an `Exception`, so
  the rollout does not record it as a failure);
- the next iteration runs the gym rollout again from the start: the episode's finished replies are
  replayed from `EpisodeState` without generating, and the paused reply continues from its kept tokens, the
  running sequence being exactly the ids sampled so far (no re-rendering);
- every generated token records the policy version that sampled it, and its log-prob at the episode's
  temperature, which stays the temperature it started with.

`EpisodeState` is plain data (pydantic), so paused episodes are saved in the trainer's checkpoints and a
SIGKILL loses none of them. Environments must give the same turns when replayed (single-turn ones trivially,
deterministic tool environments too).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from openk2.chat import Message, ToolSpec
from openk2.gym import Task
from openk2.llm import LLM, ChatRequest, Completion, SamplingParams
from openk2.llm.engine import Generation, InProcessEngine
from openk2.llm.sequence import GenerationRequest, GenerationResult

SEGMENT_SEED_STRIDE = 1_000_003  # a continued reply draws from a fresh seeded stream per segment


class EpisodePaused(BaseException):
    """The episode spent this iteration's tokens mid-reply; its `EpisodeState` keeps what it generated."""


class PartialReply(BaseModel):
    """A reply paused between iterations: the ids so far, each with its log-prob and policy version."""

    model_config = ConfigDict(extra="forbid")

    prompt_ids: list[int]
    forced_ids: list[int]
    token_ids: list[int]  # generated after the forced ids
    logprobs: list[float]  # forced ids first, then generated (as the engine reports them)
    versions: list[int]  # per id of forced_ids + token_ids
    segments: int
    cached_prompt_tokens: int


class EpisodeState(BaseModel):
    """What an episode has done so far, enough to replay it in a later iteration or after a restart."""

    model_config = ConfigDict(extra="forbid")

    id: str
    group_id: str
    source: int  # the [[rl.tasks]] entry its task came from
    task: Task
    sampling: SamplingParams  # fixed for the episode's life, temperature included
    start_iteration: int
    replies: list[Completion] = []  # finished replies, replayed in order
    reply_versions: list[list[int]] = []  # per finished reply, the policy version of each of its tokens
    partial: PartialReply | None = None

    @property
    def version(self) -> int:
        """The policy version that started the episode."""
        return self.start_iteration - 1


class EpisodeLLM(LLM):
    """The policy as one episode sees it this iteration (module docstring)."""

    def __init__(
        self, engine: InProcessEngine, state: EpisodeState, allowance: int | None, version: int
    ) -> None:
        """`allowance`: tokens the episode may generate this iteration (None: unlimited); `version`: the
        weights now in the engine."""
        self.engine = engine
        self.state = state
        self.allowance = allowance
        self.version = version
        self.generated = 0  # tokens generated this iteration
        self._calls = 0

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        raise NotImplementedError("an episode's policy is asked one reply at a time (achat)")

    def continuation_ids(
        self,
        history: Sequence[Message],
        new_messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
    ) -> list[int]:
        return self.engine.continuation_ids(history, new_messages, tools)

    async def achat(self, request: ChatRequest) -> Completion:
        call = self._calls
        self._calls += 1
        if call < len(self.state.replies):
            return self.state.replies[call]  # finished in an earlier iteration: replayed
        reply_budget = request.sampling.max_tokens
        if reply_budget is None:
            raise ValueError("max_tokens: an RL reply needs a token budget")
        partial = self.state.partial
        while True:
            done = 0 if partial is None else len(partial.forced_ids) + len(partial.token_ids)
            room = reply_budget - done
            if self.allowance is not None and self.allowance - self.generated <= 0:
                self.state.partial = partial
                raise EpisodePaused
            segment = room if self.allowance is None else min(room, self.allowance - self.generated)
            partial, result = await self._generate(request, partial, segment)
            self.generated += len(result.forced_ids) + len(result.token_ids)
            reached_budget = len(partial.forced_ids) + len(partial.token_ids) >= reply_budget
            if result.finish_reason != "length" or reached_budget:
                break
        self.state.partial = None
        completion = self.engine.completion(request, self._whole(partial, result))
        self.state.replies.append(completion)
        self.state.reply_versions.append(partial.versions)
        return completion

    async def _generate(
        self, request: ChatRequest, partial: PartialReply | None, tokens: int
    ) -> tuple[PartialReply, GenerationResult]:
        """Up to `tokens` more tokens of the reply: the first segment as the engine prepares any request,
        a later one continuing the kept ids with a fresh seeded stream."""
        if partial is None:
            short = request.sampling.model_copy(update={"max_tokens": tokens})
            prepared = self.engine.prepare(_with_sampling(request, short))
            generation = prepared.generation
            if generation.grammar is not None and self.allowance is not None:
                # a grammar's state cannot be resumed from ids: such a reply is generated in one piece
                whole = _with_sampling(request, request.sampling)
                generation = self.engine.prepare(whole).generation
        else:
            sampling = request.sampling
            if sampling.seed is not None:
                seed = (sampling.seed + SEGMENT_SEED_STRIDE * partial.segments) % 2**63
                sampling = sampling.model_copy(update={"seed": seed})
            generation = GenerationRequest(
                prompt_ids=partial.prompt_ids + partial.forced_ids + partial.token_ids,
                forced_ids=[],
                budget=tokens,
                sampling=sampling,
                end_ids=self.engine.end_ids,
            )
        result = await _run(self.engine.start(generation))
        added = len(result.forced_ids) + len(result.token_ids)
        if partial is None:
            partial = PartialReply(
                prompt_ids=result.prompt_ids,
                forced_ids=result.forced_ids,
                token_ids=result.token_ids,
                logprobs=list(result.logprobs),
                versions=[self.version] * added,
                segments=1,
                cached_prompt_tokens=result.cached_prompt_tokens,
            )
        else:
            partial = partial.model_copy(
                update=dict(
                    token_ids=partial.token_ids + result.token_ids,
                    logprobs=partial.logprobs + list(result.logprobs),
                    versions=partial.versions + [self.version] * added,
                    segments=partial.segments + 1,
                )
            )
        return partial, result

    def _whole(self, partial: PartialReply, last: GenerationResult) -> GenerationResult:
        """The reply's segments as one generation result, as if it had been generated in one piece."""
        ends = self.engine.end_ids
        text_ids = (
            partial.token_ids[:-1]
            if partial.token_ids and partial.token_ids[-1] in ends
            else partial.token_ids
        )
        return GenerationResult(
            prompt_ids=partial.prompt_ids,
            forced_ids=partial.forced_ids,
            token_ids=partial.token_ids,
            logprobs=partial.logprobs,
            top_logprobs=None,
            text=last.text if partial.segments == 1 else self.engine.decode(text_ids),
            finish_reason=last.finish_reason,
            cached_prompt_tokens=partial.cached_prompt_tokens,
        )


def _with_sampling(request: ChatRequest, sampling: SamplingParams) -> ChatRequest:
    from dataclasses import replace

    return replace(request, sampling=sampling)


async def _run(generation: Generation) -> GenerationResult:
    async for output in generation:
        if output.result is not None:
            return output.result
    raise RuntimeError("generation ended without a result")
