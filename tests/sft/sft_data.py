"""Small SFT data sets the tests build themselves: procedural gym tasks with reference answers, tool-use
trajectories with K2 tool calls, preference pairs, and the files the SFT recipe reads.

The digit-reversal tasks stand in for a gym environment's task file: SFT's `tasks` kind reads `Task` records
with `verification["answer"]`, whoever wrote them, so no generator lives in the SFT package.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from openk2.gym import MessageMeta, Task, Trajectory

REVERSAL_PROMPT = "Reverse the digits:"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
CITIES = ("Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Delhi", "Quito", "Bern", "Kyiv", "Riga", "Baku")
CITIES += (
    "Doha",
    "Suva",
    "Apia",
    "Dili",
    "Accra",
    "Dakar",
    "Rabat",
    "Tunis",
    "Sofia",
    "Minsk",
    "Turin",
    "Genoa",
)
CITIES += ("Porto", "Lyon", "Nice", "Bonn", "Graz", "Linz", "Gent", "Cork", "Bath", "York", "Lund", "Bergen")
SKIES = ("clear", "rain", "cloudy", "snow", "windy")


def reversal_tasks(
    train: int, test: int, seed: int, digits: tuple[int, int] = (3, 5)
) -> tuple[list[Task], list[Task]]:
    """Reverse a short sequence of space-separated digits; the reference answer is the reversed sequence.

    Train and test tasks hold distinct sequences, so a test answer is never one seen in training."""
    rng = random.Random(seed)
    sequences: dict[str, list[str]] = {}
    while len(sequences) < train + test:
        sequence = [str(rng.randrange(10)) for _ in range(rng.randint(*digits))]
        sequences.setdefault(" ".join(sequence), sequence)
    tasks = []
    for index, sequence in enumerate(sequences.values()):
        split = "train" if index < train else "test"
        tasks.append(
            Task(
                id=f"reverse-{index}",
                env="digit_reversal",
                kind="logic",
                split=split,
                messages=[{"role": "user", "content": f"{REVERSAL_PROMPT} {' '.join(sequence)}"}],
                verification={"answer": " ".join(reversed(sequence))},
            )
        )
    return tasks[:train], tasks[train:]


def _meta(authors: Iterable[str]) -> list[MessageMeta]:
    return [MessageMeta(author=author) for author in authors]  # type: ignore[arg-type]


def tool_trajectories(count: int, seed: int, prefix: str) -> list[Trajectory]:
    """A user asks for the weather or a sum; the assistant calls the right tool with K2 ids, reads the result,
    answers. Task ids carry `prefix`, so test and training tasks are distinct."""
    rng = random.Random(f"{seed}-{prefix}")
    trajectories = []
    for index in range(count):
        if rng.random() < 0.5:
            city, sky, degrees = rng.choice(CITIES), rng.choice(SKIES), rng.randint(-5, 35)
            question, name = f"What is the weather in {city}?", "get_weather"
            arguments, result = {"city": city}, f"{degrees}C, {sky}"
            answer = f"It is {degrees}C and {sky} in {city}."
        else:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            question, name = f"Please add {a} and {b}.", "add"
            arguments, result, answer = {"a": a, "b": b}, str(a + b), f"{a} + {b} = {a + b}."
        call_id = f"functions.{name}:0"
        messages = [
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "name": name, "content": result},
            {"role": "assistant", "content": answer},
        ]
        trajectories.append(
            Trajectory(
                id=f"{prefix}-{index}",
                task_id=f"{prefix}-task-{index}",
                env="tools",
                tools=[WEATHER_TOOL, ADD_TOOL],
                messages=messages,
                meta=_meta(["user_sim", "teacher", "tool_exec", "teacher"]),
                reward=1.0,
            )
        )
    return trajectories


def small_mixture(directory: Path) -> list[dict[str, Any]]:
    """Two short sources for runs that test the loop, not learning: reversal tasks (weight 3) and chat records
    exported from tool trajectories (`Trajectory.sft_example()`, tools left undeclared to keep them short)."""
    train, test = reversal_tasks(40, 8, seed=0)
    chats = [
        {**trajectory.sft_example(), "tools": []}
        for trajectory in tool_trajectories(16, seed=1, prefix="chat")
    ]
    return [
        dict(kind="tasks", path=write_jsonl(directory / "tasks.jsonl", train + test), weight=3.0),
        dict(kind="chat", path=write_jsonl(directory / "chat.jsonl", chats), weight=1.0),
    ]


def write_jsonl(path: Path, records: Iterable[BaseModel | dict[str, Any] | str]) -> Path:
    """One record per line: models as their JSON, dicts as JSON, strings as they are (bad lines for tests)."""
    lines = []
    for record in records:
        if isinstance(record, BaseModel):
            lines.append(record.model_dump_json(exclude_none=True))
        elif isinstance(record, dict):
            lines.append(json.dumps(record))
        else:
            lines.append(record)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
