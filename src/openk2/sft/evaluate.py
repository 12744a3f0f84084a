"""Held-out checks of what SFT taught, by greedy decoding: exact-match answers and well-formed tool calls.

These are the quick measurements the SFT proof needs (tests, `bench/sft.py`); the gym's environments score
tasks properly. Both go through the `LLM` interface, so any back end can be measured the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openk2.chat import ToolCall
from openk2.gym import Task, Trajectory
from openk2.llm import LLM, SamplingParams, chat_request
from openk2.sft.task_answers import reference_answer


def exact_match_rate(llm: LLM, tasks: Sequence[Task], max_tokens: int = 32) -> float:
    """Share of tasks whose greedy reply, stripped, is exactly the reference answer."""
    sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    replies = llm.chat_batch([chat_request(task.messages, task.tools or None, sampling) for task in tasks])
    hits = [
        reply.message.text.strip() == (reference_answer(task) or "").strip()
        for task, reply in zip(tasks, replies, strict=True)
    ]
    return sum(hits) / len(hits)


@dataclass(frozen=True)
class ToolCallRates:
    well_formed: float  # the reply parses as K2 tool calls to declared tools (`openk2.chat.parse`)
    matching: float  # and calls the reference's tools with the reference's arguments


def first_call_prompts(trajectories: Sequence[Trajectory]) -> list[tuple[Trajectory, int]]:
    """(trajectory, index of its first assistant message with tool calls) for those that have one."""
    found = []
    for trajectory in trajectories:
        index = next(
            (
                i
                for i, message in enumerate(trajectory.messages)
                if message.role == "assistant" and message.tool_calls
            ),
            None,
        )
        if index is not None:
            found.append((trajectory, index))
    return found


def tool_call_rates(llm: LLM, trajectories: Sequence[Trajectory], max_tokens: int = 64) -> ToolCallRates:
    """Greedy replies at each trajectory's first tool-calling turn, against the calls the trajectory made there."""
    prompts = first_call_prompts(trajectories)
    if not prompts:
        raise ValueError("trajectories: none has an assistant message with tool calls")
    sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    requests = [chat_request(t.messages[:index], t.tools or None, sampling) for t, index in prompts]
    replies = llm.chat_batch(requests)
    well_formed = matching = 0
    for (trajectory, index), reply in zip(prompts, replies, strict=True):
        if reply.finish_reason != "tool_calls" or reply.error is not None:
            continue
        well_formed += 1
        expected = trajectory.messages[index].tool_calls or []
        got = reply.message.tool_calls or []
        matching += [_call(c) for c in got] == [_call(c) for c in expected]
    return ToolCallRates(well_formed / len(prompts), matching / len(prompts))


def _call(call: ToolCall) -> tuple[str, Any]:
    return call.function.name, json.loads(call.function.arguments)
