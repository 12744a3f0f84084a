"""The two records every post-training stage shares (K2 report §3.1–3.3): a `Task` and a `Trajectory`.

One record type crosses synthesis, SFT, RL and evaluation; they differ only in who wrote each message and
whether the sampled tokens were kept. Messages and tools stay in OpenAI's wire format, untouched, so any
trajectory can be sent to an OpenAI-compatible server or rendered by the K2 template as it is; everything
else sits beside them:

    Trajectory.messages[i]  an OpenAI message         Trajectory.meta[i]  who wrote it, with which model,
                                                                          its error, and (RL) its token span
    Trajectory.rewards      named reward components, each with `error` when its verifier failed
    Trajectory.reward       the combined reward, None when a component it needs has an error

A token-level rollout keeps, per message, the token ids it added to the running sequence: the policy's
replies as sampled (mask True, log-probs at the sampling temperature, policy version), everything else
(prompt, tool results, user turns, forced template tokens) with mask False. Concatenated in message order
they are exactly the sequence the policy read, so training never re-renders a finished conversation.
Stored as JSONL, one record per line (`read_records`, `append_record`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from openk2.chat import Message, ToolSpec
from openk2.io import JsonlLog
from openk2.llm import SamplingParams, Usage
from openk2.recipes import describe_errors

TaskKind = Literal[
    "math", "logic", "instruction", "code", "tool_use", "safety", "faithfulness", "open_ended", "preference"
]
Split = Literal["train", "test"]
Author = Literal["dataset", "policy", "teacher", "user_sim", "tool_exec", "tool_sim", "env"]
Termination = Literal[
    "agent_stop",  # the agent answered without a tool call (single-turn: its reply)
    "user_stop",  # the simulated user ended the conversation
    "max_turns",
    "budget_exceeded",  # the reply hit the task's token budget (K2 report §3.2.3, budget control)
    "context_overflow",
    "tool_errors",
    "aborted",
    "infra_error",  # the model or an environment service failed; not the agent's fault
]
Status = Literal["completed", "truncated", "aborted", "failed"]
RubricKind = Literal["core", "prescriptive", "task"]
Combine = Literal["product", "weighted_sum"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenSpan(_Record):
    """The token ids one message added to the running sequence of a token-level rollout."""

    token_ids: list[int]
    sampled: list[bool]  # True: sampled by the policy (trainable); False: prompt, env or forced tokens
    logprobs: list[float] | None = None  # per token, under the sampling distribution at `temperature`
    temperature: float | None = None
    policy_version: int | None = None  # the weights that sampled it (the first of them, when several did)
    # per token, when a paused reply was continued by newer weights (RL partial rollouts); else None
    policy_versions: list[int] | None = None

    @model_validator(mode="after")
    def _parallel_lists(self) -> Self:
        if len(self.sampled) != len(self.token_ids):
            raise ValueError(f"sampled: {len(self.sampled)} flags for {len(self.token_ids)} token ids")
        if self.policy_versions is not None and len(self.policy_versions) != len(self.token_ids):
            raise ValueError(
                f"policy_versions: {len(self.policy_versions)} versions for {len(self.token_ids)} token ids"
            )
        if self.logprobs is not None and len(self.logprobs) != len(self.token_ids):
            raise ValueError(f"logprobs: {len(self.logprobs)} values for {len(self.token_ids)} token ids")
        if any(self.sampled) and self.logprobs is None:
            raise ValueError("logprobs: sampled tokens need the log-probabilities they were sampled with")
        return self


class MessageMeta(_Record):
    """What is known about one message besides its wire form."""

    author: Author
    model: str | None = None  # the model that wrote it, when one did
    turn: int = Field(default=0, ge=0)  # the agent turn it belongs to (0: the task's initial messages)
    sampled: bool = False  # produced by a model call
    error: str | None = None  # a tool error, or why an assistant reply did not parse
    finish_reason: str | None = None
    latency_s: float | None = None
    usage: Usage | None = None
    tokens: TokenSpan | None = None


class RewardComponent(_Record):
    """One named part of a reward. A verifier that crashed or timed out sets `error`: never a silent 0."""

    name: str
    score: float | None = None  # None exactly when `error` is set
    weight: float = 1.0
    passed: bool | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @model_validator(mode="after")
    def _score_or_error(self) -> Self:
        if (self.score is None) == (self.error is None):
            raise ValueError(f"{self.name}: a component has a score or an error, exactly one")
        return self


class Reward(_Record):
    """A scored episode: `value` in [0, 1] from the components, None when one of them has an error."""

    value: float | None
    components: list[RewardComponent]
    error: str | None = None  # the first component error, named

    @classmethod
    def combine(cls, components: Sequence[RewardComponent], how: Combine = "weighted_sum") -> Reward:
        """Product or weight-normalised sum of the scores; any component error makes the reward an error."""
        failed = [component for component in components if component.error is not None]
        if failed:
            return cls(value=None, components=list(components), error=f"{failed[0].name}: {failed[0].error}")
        if not components:
            raise ValueError("components: a reward needs at least one component")
        scores = [(component.score or 0.0, component.weight) for component in components]
        if how == "product":
            value = 1.0
            for score, _ in scores:
                value *= score
        else:
            total_weight = sum(weight for _, weight in scores)
            if total_weight <= 0:
                raise ValueError("components: weights must sum to more than 0")
            value = sum(score * weight for score, weight in scores) / total_weight
        return cls(value=min(max(value, 0.0), 1.0), components=list(components))


class RubricItem(_Record):
    """One criterion a judge or critic checks (K2 report §3.1.1 task rubrics, §3.2.2 / App. F rubrics)."""

    name: str
    description: str
    kind: RubricKind = "task"
    weight: float = Field(default=1.0, ge=0)


class UserScenario(_Record):
    """What a simulated user knows and wants (tau-bench style): the agent sees none of it."""

    persona: str | None = None  # communication style and preferences
    goal: str
    known_info: str | None = None  # what the user can tell when asked
    unknown_info: str | None = None  # what the user does not know
    instructions: str | None = None  # how to behave, when to stop


class Task(_Record):
    """Something to do: the initial messages, the tools, and how success is checked."""

    id: str = Field(min_length=1)
    env: str  # the gym environment that runs and scores it
    kind: TaskKind
    split: Split | None = None
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolSpec] = Field(default_factory=list)
    user: UserScenario | None = None
    initial_state: dict[str, Any] | None = None  # the tool environment's state before the first call
    verification: dict[str, Any] = Field(default_factory=dict)  # expected answer, tests, final state
    rubric: list[RubricItem] = Field(default_factory=list)
    budget: int | None = Field(default=None, gt=0)  # max tokens per reply (K2's per-task-type budget)
    combine: Combine = "weighted_sum"
    metadata: dict[str, Any] = Field(default_factory=dict)  # source, licence, difficulty, ...


class Trajectory(_Record):
    """One episode of a task: the conversation, who wrote what, the sampled tokens, and the reward."""

    id: str = Field(min_length=1)
    task_id: str
    env: str | None = None
    group_id: str | None = None  # the K samples of one task in RL share it
    tools: list[ToolSpec] = Field(default_factory=list)
    messages: list[Message]
    meta: list[MessageMeta]
    sampling: SamplingParams | None = None  # the values actually used
    termination: Termination | None = None
    status: Status = "completed"
    env_final: dict[str, Any] | None = None  # e.g. a hash or snapshot of the tool environment's state
    rewards: list[RewardComponent] = Field(default_factory=list)
    reward: float | None = None
    judge: dict[str, Any] | None = None  # synthesis-time verdicts
    provenance: dict[str, Any] = Field(default_factory=dict)  # stage versions, persona, models, seeds
    error: str | None = None  # why an `infra_error` episode stopped (the model or a service failed)

    @model_validator(mode="after")
    def _one_meta_per_message(self) -> Self:
        if len(self.meta) != len(self.messages):
            raise ValueError(f"meta: {len(self.meta)} entries for {len(self.messages)} messages")
        return self

    def sft_example(self) -> dict[str, Any]:
        """The conversation as an OpenAI chat example: what SFT trains on."""
        return {
            "messages": [message.model_dump(exclude_none=True) for message in self.messages],
            "tools": [tool.to_openai() for tool in self.tools],
        }

    def token_sequence(self) -> tuple[list[int], list[bool], list[float]]:
        """(ids, trainable mask, log-probs) of the whole episode from its kept spans, in message order.

        Unsampled tokens get log-prob 0.0. Every message must carry a span: a trajectory whose tokens were
        not kept cannot be trained on token-exactly.
        """
        ids: list[int] = []
        mask: list[bool] = []
        logprobs: list[float] = []
        for index, meta in enumerate(self.meta):
            if meta.tokens is None:
                raise ValueError(f"meta[{index}].tokens: this trajectory did not keep its token spans")
            ids += meta.tokens.token_ids
            mask += meta.tokens.sampled
            logprobs += meta.tokens.logprobs or [0.0] * len(meta.tokens.token_ids)
        return ids, mask, logprobs


RecordType = TypeVar("RecordType", Task, Trajectory)


def iter_records(path: Path, record_type: type[RecordType]) -> Iterator[RecordType]:
    """The records of a JSONL file; a bad line is an error naming the file, the line and the field."""
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                yield record_type.model_validate(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not a JSON record ({error})") from None
            except ValidationError as error:
                raise ValueError(f"{path}:{line_number}: {describe_errors(error, within='')}") from None


def read_records(path: Path, record_type: type[RecordType]) -> list[RecordType]:
    return list(iter_records(path, record_type))


def append_record(log: JsonlLog, record: Task | Trajectory) -> None:
    """One fsync'd line: a kill leaves at most a torn last line, which the next open cuts off."""
    log.append(record.model_dump(mode="json", exclude_none=True))
