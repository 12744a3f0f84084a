"""Drive episodes through the LLM interface and record them as trajectories (K2 report §3.3, agentic rollout).

    task.messages ─llm─> reply ─env─> tool results / user turn ─llm─> reply ─ ... ─env─> done ─> score

With `sampling.return_tokens` (an in-process model), the rollout keeps the running token sequence the
policy read: the first prompt as the model rendered it, each reply exactly as sampled (with its
log-probs), and after it only the ids that the new tool results or user turn add (`continuation_ids`),
so the sequence is never re-rendered. Each message's `MessageMeta.tokens` holds its part; their
concatenation is the whole sequence (`Trajectory.token_sequence()`). An endpoint continues messages,
not token ids, so its trajectories are kept at message level.

Many episodes run at once (`rollouts`), bounded by a semaphore: environment latency (tool servers, the
sandbox, a user simulator) overlaps with generation. A failure of the model or of the environment ends
the episode as `infra_error` and keeps it; a failed verifier is a reward component with an error.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from typing import Any

from openk2.chat import ChatFormatError, Message, ToolSpec
from openk2.gym.environment import Environment, Turn
from openk2.gym.records import (
    MessageMeta,
    Reward,
    RewardComponent,
    Status,
    Task,
    Termination,
    TokenSpan,
    Trajectory,
)
from openk2.llm import LLM, Completion, SamplingParams, chat_request

DEFAULT_MAX_TURNS = 30


class _Recorder:
    """The conversation so far, its metadata and (token-level) the running token sequence."""

    def __init__(self, task: Task, llm: LLM, token_level: bool, policy_version: int | None) -> None:
        self.messages: list[Message] = list(task.messages)
        self.meta: list[MessageMeta] = [MessageMeta(author="dataset") for _ in task.messages]
        self.tools: list[ToolSpec] | None = list(task.tools) or None
        self.llm = llm
        self.token_level = token_level
        self.policy_version = policy_version
        self.running: list[int] | None = None  # None until the first reply brings the rendered prompt

    def add_reply(self, completion: Completion, turn: int, latency_s: float) -> None:
        span = None
        if self.token_level:
            tokens = completion.tokens
            if tokens is None:
                raise ChatFormatError(f"return_tokens: {self.llm.model_name} returned no token ids")
            if self.running is None:  # the initial prompt: split it over the messages it renders
                self.running = list(tokens.prompt_token_ids)
                self._assign(0, self.running)
            span = TokenSpan(
                token_ids=tokens.token_ids,
                sampled=tokens.sampled,
                logprobs=tokens.logprobs,
                temperature=tokens.temperature,
                policy_version=self.policy_version,
            )
            self.running += tokens.token_ids
        self.messages.append(completion.message)
        self.meta.append(
            MessageMeta(
                author="policy",
                model=completion.model,
                turn=turn,
                sampled=True,
                error=None
                if completion.error is None
                else f"{completion.error.kind}: {completion.error.detail}",
                finish_reason=completion.finish_reason,
                latency_s=latency_s,
                usage=completion.usage,
                tokens=span,
            )
        )

    def add_environment_turn(self, turn: Turn, turn_index: int, continues: bool) -> None:
        """Append the environment's messages; when the dialogue continues, their tokens join the sequence."""
        if not turn.messages:
            return
        first_new = len(self.messages)
        history = list(self.messages)
        self.messages += turn.messages
        meta = turn.meta or [MessageMeta(author="env") for _ in turn.messages]
        self.meta += [entry.model_copy(update={"turn": turn_index}) for entry in meta]
        if self.token_level and continues and self.running is not None:
            added = self.llm.continuation_ids(history, turn.messages, self.tools)
            self.running += added
            self._assign(first_new, added)

    def _assign(self, first: int, ids: list[int]) -> None:
        """Split `ids` (what messages[first:] add, up to the next generation prompt) into per-message spans.

        The boundary after message k is where the continuation of messages[:k] starts: exactly the
        tokens the rest of the messages add, which end with the generation prompt (kept by the last).
        """
        cuts = [0]
        for k in range(first + 1, len(self.messages)):
            rest = self.llm.continuation_ids(self.messages[:k], self.messages[k:], self.tools)
            cut = len(ids) - len(rest)
            if cut < cuts[-1] or ids[cut:] != rest:
                raise ChatFormatError(
                    f"messages[{k}]: the template does not render it as a suffix of the history"
                )
            cuts.append(cut)
        cuts.append(len(ids))
        for index, (start, end) in zip(
            range(first, len(self.messages)), itertools.pairwise(cuts), strict=True
        ):
            part = ids[start:end]
            self.meta[index] = self.meta[index].model_copy(
                update={"tokens": TokenSpan(token_ids=part, sampled=[False] * len(part))}
            )


async def rollout(
    env: Environment,
    task: Task,
    llm: LLM,
    sampling: SamplingParams,
    *,
    max_turns: int = DEFAULT_MAX_TURNS,
    trajectory_id: str | None = None,
    group_id: str | None = None,
    policy_version: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> Trajectory:
    """One episode of `task` with `llm` as the agent, scored by `env`."""
    if task.budget is not None and (sampling.max_tokens is None or sampling.max_tokens > task.budget):
        sampling = sampling.model_copy(update={"max_tokens": task.budget})  # K2's per-task-type budget
    recorder = _Recorder(task, llm, sampling.return_tokens, policy_version)
    termination: Termination | None = None
    status: Status = "completed"
    error: str | None = None
    episode = await env.start(task)
    try:
        if recorder.messages[-1].role not in ("user", "tool"):  # the environment speaks first (a user)
            opening = await episode.respond(recorder.messages)
            recorder.add_environment_turn(opening, 0, continues=True)
        for turn_index in range(1, max_turns + 1):
            request = chat_request(
                recorder.messages, recorder.tools, sampling, prompt_token_ids=recorder.running
            )
            started = time.monotonic()
            completion = await llm.achat(request)
            recorder.add_reply(completion, turn_index, time.monotonic() - started)
            if completion.finish_reason == "length":
                termination, status = "budget_exceeded", "truncated"
                break
            turn = await episode.respond(recorder.messages)
            recorder.add_environment_turn(turn, turn_index, continues=not turn.done)
            if turn.done:
                termination = turn.termination or "agent_stop"
                break
        else:
            termination, status = "max_turns", "truncated"
    except ChatFormatError:
        raise  # a request the model can never serve (e.g. kept tokens from an endpoint): fix the setup
    except Exception as failure:  # the model or an environment service failed: keep what happened
        termination, status, error = "infra_error", "failed", f"{type(failure).__name__}: {failure}"
    finally:
        env_final = episode.final_state
        await episode.close()
    reward = None if status == "failed" else await _score(env, task, recorder.messages)
    return Trajectory(
        id=trajectory_id or f"{task.id}#{uuid.uuid4().hex[:12]}",
        task_id=task.id,
        env=env.name,
        group_id=group_id,
        tools=task.tools,
        messages=recorder.messages,
        meta=recorder.meta,
        sampling=sampling,
        termination=termination,
        status=status,
        env_final=env_final,
        rewards=[] if reward is None else reward.components,
        reward=None if reward is None else reward.value,
        error=error,
        provenance=provenance or {},
    )


async def _score(env: Environment, task: Task, messages: Sequence[Message]) -> Reward:
    try:
        return await env.score(task, messages)
    except Exception as failure:  # the scorer itself broke (a server gone): an error, never a 0
        return Reward.combine([RewardComponent(name="score", error=f"{type(failure).__name__}: {failure}")])


async def rollouts(
    env: Environment,
    tasks: Sequence[Task],
    llm: LLM,
    sampling: SamplingParams,
    *,
    samples_per_task: int = 1,
    max_concurrency: int = 8,
    max_turns: int = DEFAULT_MAX_TURNS,
    policy_version: int | None = None,
) -> list[Trajectory]:
    """`samples_per_task` episodes of every task (a group shares its `group_id`), at most
    `max_concurrency` at once; seeded sampling gives sample i the seed `seed + i`."""
    if samples_per_task < 1 or max_concurrency < 1:
        raise ValueError(
            f"samples_per_task, max_concurrency: expected >= 1, got {samples_per_task}, {max_concurrency}"
        )
    gate = asyncio.Semaphore(max_concurrency)

    async def one(task: Task, sample: int) -> Trajectory:
        seeded = (
            sampling
            if sampling.seed is None
            else sampling.model_copy(update={"seed": sampling.seed + sample})
        )
        async with gate:
            return await rollout(
                env,
                task,
                llm,
                seeded,
                max_turns=max_turns,
                trajectory_id=f"{task.id}#{sample}",
                group_id=task.id,
                policy_version=policy_version,
            )

    return list(
        await asyncio.gather(*(one(task, sample) for task in tasks for sample in range(samples_per_task)))
    )
