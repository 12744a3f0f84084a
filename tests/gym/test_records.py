"""Task and Trajectory records: JSONL round trips, named errors, reward combination, kept token spans."""

import json
from pathlib import Path

import pytest

from openk2.gym import (
    MessageMeta,
    Reward,
    RewardComponent,
    Task,
    TokenSpan,
    Trajectory,
    append_record,
    read_records,
)
from openk2.io import JsonlLog

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "functions.get_weather:0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ],
}
MESSAGES = [
    {"role": "user", "content": "Weather in Paris?"},
    CALL,
    {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "18C"},
    {"role": "assistant", "content": "It is 18C."},
]


def trajectory(**changes) -> Trajectory:
    spans = [
        TokenSpan(token_ids=[1, 2, 3], sampled=[False] * 3),
        TokenSpan(
            token_ids=[4, 5], sampled=[True, True], logprobs=[-0.5, -0.25], temperature=1.0, policy_version=3
        ),
        TokenSpan(token_ids=[6], sampled=[False]),
        TokenSpan(token_ids=[7, 8], sampled=[True, False], logprobs=[-1.0, 0.0], temperature=1.0),
    ]
    authors = ["dataset", "policy", "tool_exec", "policy"]
    fields = {
        "id": "t-0",
        "task_id": "weather-0",
        "tools": [TOOL],
        "messages": MESSAGES,
        "meta": [MessageMeta(author=a, tokens=s) for a, s in zip(authors, spans, strict=True)],
        "rewards": [RewardComponent(name="answer", score=1.0, passed=True)],
        "reward": 1.0,
    }
    return Trajectory.model_validate(fields | changes)


def test_a_trajectory_survives_jsonl_with_wire_messages_untouched(tmp_path: Path):
    path = tmp_path / "trajectories.jsonl"
    original = trajectory()
    append_record(JsonlLog(path), original)
    [read] = read_records(path, Trajectory)
    assert read == original
    wire = [{key: value for key, value in message.items() if value is not None} for message in MESSAGES]
    assert json.loads(path.read_text())["messages"] == wire  # OpenAI wire form, arguments a string
    assert read.sft_example() == {"messages": wire, "tools": [TOOL]}


def test_token_sequence_concatenates_the_kept_spans_in_message_order():
    ids, mask, logprobs = trajectory().token_sequence()
    assert ids == [1, 2, 3, 4, 5, 6, 7, 8]
    assert mask == [False, False, False, True, True, False, True, False]
    assert logprobs == [0.0, 0.0, 0.0, -0.5, -0.25, 0.0, -1.0, 0.0]
    without = trajectory(meta=[MessageMeta(author="dataset")] * 4)
    with pytest.raises(ValueError, match=r"meta\[0\]\.tokens"):
        without.token_sequence()


def test_sampled_tokens_need_their_logprobs_and_lists_must_align():
    with pytest.raises(ValueError, match="logprobs"):
        TokenSpan(token_ids=[1], sampled=[True])
    with pytest.raises(ValueError, match="sampled: 1 flags for 2 token ids"):
        TokenSpan(token_ids=[1, 2], sampled=[False])
    with pytest.raises(ValueError, match="meta: 1 entries for 4 messages"):
        trajectory(meta=[MessageMeta(author="dataset")])


def test_a_component_has_a_score_or_an_error_and_an_error_is_never_a_zero():
    with pytest.raises(ValueError, match="exactly one"):
        RewardComponent(name="tests")
    with pytest.raises(ValueError, match="exactly one"):
        RewardComponent(name="tests", score=0.0, error="timed out")
    reward = Reward.combine(
        [
            RewardComponent(name="format", score=1.0),
            RewardComponent(name="tests", error="timed out after 10 s"),
        ]
    )
    assert reward.value is None
    assert reward.error == "tests: timed out after 10 s"


def test_components_combine_as_weighted_mean_or_product():
    parts = [
        RewardComponent(name="a", score=1.0, weight=3.0),
        RewardComponent(name="b", score=0.5, weight=1.0),
    ]
    assert Reward.combine(parts).value == pytest.approx((3 * 1.0 + 0.5) / 4)
    assert Reward.combine(parts, "product").value == pytest.approx(0.5)


def test_a_bad_task_line_names_the_file_line_and_field(tmp_path: Path):
    good = Task(id="a", env="math", kind="math", messages=[{"role": "user", "content": "1+1?"}])
    path = tmp_path / "tasks.jsonl"
    bad = good.model_dump(mode="json") | {"kind": "poetry"}
    path.write_text(good.model_dump_json() + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"tasks\.jsonl:2: kind: Input should be"):
        read_records(path, Task)
    path.write_text(good.model_dump_json() + "\n{not json\n")
    with pytest.raises(ValueError, match=r"tasks\.jsonl:2: not a JSON record"):
        read_records(path, Task)
