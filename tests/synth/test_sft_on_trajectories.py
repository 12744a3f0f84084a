"""Kept trajectories are what SFT reads: they render with the K2 chat template (tool calls in K2's
wire format, assistant tokens masked for the loss) and `openk2 sft` trains on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openk2.chat import render
from openk2.gym.records import Trajectory, read_records
from openk2.sft.run import DATA_SUMMARY, sft
from openk2.synth import synthesise
from openk2.train.metrics import read_metrics
from tests.sft.sft_recipe import pretrain_small, sft_sections, write_sft_recipe
from tests.synth.scripted_world import bag_of_words, scripted_models
from tests.synth.synth_recipe import small_recipe


@pytest.fixture(scope="module")
def long_context_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small K2 of the SFT tests with room for 2,048 positions (a conversation declares its tools in
    full), pre-trained six steps: the test is that SFT reads and trains on the trajectories, not what it learns."""
    return pretrain_small(tmp_path_factory.mktemp("pretrained"), steps=6, positions=2048)


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("synth") / "run"
    synthesise(small_recipe(output), progress=False, models=scripted_models(), embed=bag_of_words)
    return output / "trajectories.jsonl"


def test_kept_trajectories_render_with_the_k2_template(trajectories):
    for trajectory in read_records(trajectories, Trajectory):
        example = trajectory.sft_example()
        text = render(example["messages"], example["tools"])
        calls = [call for m in trajectory.messages if m.role == "assistant" for call in m.tool_calls or []]
        assert calls and text.count("<|tool_call_begin|>") == len(calls)
        assert all(f"## Return of {call.id}" in text for call in calls)  # K2 ids: functions.{name}:{n}
        assert all(call.id == f"functions.{call.function.name}:{index}" for index, call in enumerate(calls))


@pytest.mark.slow
def test_sft_trains_on_kept_trajectories(trajectories, long_context_checkpoint, tmp_path):
    sections = sft_sections(
        tmp_path,
        long_context_checkpoint,
        run=dict(steps=3, checkpoint_every=3, val_every=3),
        sft=dict(seq_len=2048),
        train=dict(batch_size=1, grad_accum=1),
    )
    source = dict(kind="trajectories", path=trajectories, weight=1.0)
    result = sft(write_sft_recipe(tmp_path / "sft.toml", sections, [source]), progress=False)
    summary = json.loads((result.run.run_dir / DATA_SUMMARY).read_text())["sources"][0]
    kept = len(trajectories.read_text().splitlines())
    assert summary["skipped"] == {} and summary["train_conversations"] + summary["val_conversations"] == kept
    records = read_metrics(result.run.run_dir / "metrics.jsonl")
    assert [r.step for r in records] == [1, 2, 3]
    assert all(
        r.trained_tokens > 0 and r.loss == r.loss for r in records
    )  # finite losses on assistant tokens
