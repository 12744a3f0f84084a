"""Reading the four data kinds; bad records named by file and line and skipped with a count, or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openk2.chat.critic_format import CRITIC_SYSTEM_PROMPT, parse_verdict
from openk2.recipes import validate_recipe
from openk2.sft.recipe import SourceSection
from openk2.sft.sources import read_source
from tests.sft.sft_data import reversal_tasks, tool_trajectories, write_jsonl

GOOD = {
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "2C"},
        {"role": "assistant", "content": "2C in Oslo."},
    ]
}
NO_ASSISTANT = {"messages": [{"role": "user", "content": "Hello?"}]}
BAD_ARGUMENTS = {
    "messages": [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": Oslo'}}
            ],
        },
    ]
}
UNMATCHED_RESULT = {
    "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "2C"},
        {"role": "assistant", "content": "2C."},
    ]
}
MISSPELT = {"mesages": [{"role": "user", "content": "Hi"}]}


def test_bad_chat_records_are_named_by_file_and_line_and_counted(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "chat.jsonl",
        [GOOD, NO_ASSISTANT, BAD_ARGUMENTS, UNMATCHED_RESULT, "{not json", "", MISSPELT, GOOD],
    )
    read = read_source(SourceSection(kind="chat", path=path))
    assert read.records == 7 and len(read.conversations) == 2
    assert [(problem.origin, problem.kind) for problem in read.problems] == [
        (f"{path}:2", "no_assistant_turn"),
        (f"{path}:3", "bad_tool_arguments"),
        (f"{path}:4", "unmatched_tool_result"),
        (f"{path}:5", "invalid_record"),
        (f"{path}:7", "invalid_record"),
    ]
    details = [problem.detail for problem in read.problems]
    assert details[1].startswith("messages[1].tool_calls[0].function.arguments: not valid JSON")
    assert "messages[1].tool_call_id: 'functions.get_weather:0' answers no earlier tool call" in details[2]
    assert "mesages" in details[4]
    assert str(read.problems[0]).startswith(f"{path}:2: ")


def test_trajectories_are_read_through_the_gym_record_and_filtered_by_reward(tmp_path: Path) -> None:
    good, low = tool_trajectories(2, seed=0, prefix="t")
    low = low.model_copy(update={"reward": 0.2})
    broken = json.loads(good.model_dump_json())
    broken["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{"
    path = write_jsonl(tmp_path / "trajectories.jsonl", [good, low, json.dumps(broken)])
    read = read_source(SourceSection(kind="trajectories", path=path, min_reward=0.5))
    assert (len(read.conversations), read.filtered, [p.kind for p in read.problems]) == (
        1,
        1,
        ["bad_tool_arguments"],
    )
    conversation = read.conversations[0]
    assert conversation.messages == good.messages and conversation.tools == good.tools
    assert conversation.split_key == f"task:{good.task_id}" and conversation.origin == f"{path}:1"
    assert read.problems[0].origin == f"{path}:3"


def test_a_preference_pair_becomes_two_judgements_with_the_positions_swapped(tmp_path: Path) -> None:
    record = {
        "id": "p1",
        "prompt": "Name a prime number.",
        "chosen": "7.",
        "rejected": "Great question! 9.",
        "rubric": [{"name": "correct", "description": "The answer is right."}],
    }
    path = write_jsonl(tmp_path / "preference.jsonl", [record, {**record, "chosen": ""}])
    read = read_source(SourceSection(kind="preference", path=path))
    assert [p.kind for p in read.problems] == ["invalid_record"] and "chosen" in read.problems[0].detail
    first, swapped = read.conversations
    assert first.split_key == swapped.split_key == "p1"  # both orders on the same side of the split
    for conversation, (a, b, verdict) in zip(
        (first, swapped), (("7.", "Great question! 9.", "A"), ("Great question! 9.", "7.", "B")), strict=True
    ):
        system, user, reply = conversation.messages
        assert system.content == CRITIC_SYSTEM_PROMPT
        assert "- correct: The answer is right." in user.text and "Name a prime number." in user.text
        assert user.text.index(f"# Response A\n{a}") < user.text.index(f"# Response B\n{b}")
        assert parse_verdict(reply.text) == verdict


def test_tasks_become_prompt_then_reference_answer_and_keep_their_split(tmp_path: Path) -> None:
    train, test = reversal_tasks(2, 1, seed=0)
    no_answer = train[1].model_copy(update={"verification": {}})
    path = write_jsonl(tmp_path / "tasks.jsonl", [train[0], no_answer, test[0]])
    read = read_source(SourceSection(kind="tasks", path=path))
    assert [(p.origin, p.kind) for p in read.problems] == [(f"{path}:2", "no_answer")]
    kept, held_out = read.conversations
    assert kept.messages[-1].content == train[0].verification["answer"] and kept.held_out is False
    assert kept.messages[:-1] == train[0].messages and held_out.held_out is True


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (dict(kind="chat", path="missing.jsonl"), "missing.jsonl is not a file"),
        (dict(kind="chat", min_reward=0.5), "min_reward: only trajectories carry a reward, not chat"),
        (dict(kind="chats"), "kind"),
        (dict(kind="chat", weight=0), "weight"),
    ],
)
def test_bad_source_settings_are_named(tmp_path: Path, fields: dict, problem: str) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD])
    with pytest.raises(ValueError, match=problem):
        validate_recipe(SourceSection, {"path": str(path), **fields}, "recipe")


@pytest.mark.parametrize(("kind", "name"), [("chat", "chat.jsonl"), ("preference", "preference.jsonl")])
def test_the_shipped_samples_read_without_a_problem(kind: str, name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "samples" / "sft" / name
    read = read_source(SourceSection(kind=kind, path=path))
    assert read.problems == [] and read.records >= 6
    assert len(read.conversations) == read.records * (2 if kind == "preference" else 1)
