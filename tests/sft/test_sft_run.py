"""`openk2 sft` end to end on a tiny pre-trained checkpoint: every data kind, bad records counted and named,
the validation loss recomputed independently, the report, and --strict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from openk2.cli import main
from openk2.model import K2ForCausalLM
from openk2.sft.dataset import is_held_out
from openk2.sft.examples import training_example
from openk2.sft.recipe import load_sft_recipe
from openk2.sft.run import DATA_SUMMARY, SKIPPED, SFTRun, sft
from openk2.sft.sources import read_source
from openk2.tokenizer import load_tokenizer
from openk2.train.metrics import read_metrics
from tests.sft.sft_data import reversal_tasks, tool_trajectories, write_jsonl
from tests.sft.sft_recipe import sft_sections, write_sft_recipe
from tests.sft.test_sources import BAD_ARGUMENTS, GOOD, NO_ASSISTANT, UNMATCHED_RESULT

PREFERENCE = {
    "prompt": "Name a prime.",
    "chosen": "7.",
    "rejected": "Great question! 9.",
    "rubric": [{"name": "correct", "description": "The answer is right."}],
}


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    root = tmp_path_factory.mktemp("data")
    train, test = reversal_tasks(30, 6, seed=0)
    long_chat = {  # three turns; only the first two fit in 512 tokens
        "messages": [
            message
            for turn in range(3)
            for message in (
                {"role": "user", "content": f"Tell me about turn {turn}. " + "the king " * 60 * turn},
                {"role": "assistant", "content": f"Turn {turn} is fine."},
            )
        ]
    }
    too_long = {
        "messages": [{"role": "user", "content": "the king " * 300}, {"role": "assistant", "content": "ok"}]
    }
    return [
        dict(
            kind="chat",
            path=write_jsonl(
                root / "chat.jsonl",
                [GOOD, NO_ASSISTANT, BAD_ARGUMENTS, UNMATCHED_RESULT, long_chat, too_long]
                + [{**GOOD, "id": f"g{i}"} for i in range(8)],
            ),
            weight=1.0,
        ),
        dict(
            kind="trajectories",
            path=write_jsonl(root / "traj.jsonl", tool_trajectories(10, 0, "t")),
            weight=1.0,
        ),
        dict(
            kind="preference",
            path=write_jsonl(root / "pref.jsonl", [{**PREFERENCE, "id": f"p{i}"} for i in range(6)]),
        ),
        dict(kind="tasks", path=write_jsonl(root / "tasks.jsonl", train + test), weight=2.0),
    ]


@pytest.fixture(scope="module")
def finished(pretrained_checkpoint: Path, data_files: list[dict], tmp_path_factory) -> tuple[Path, SFTRun]:
    root = tmp_path_factory.mktemp("sft")
    sections = sft_sections(
        root, pretrained_checkpoint, run=dict(sample_prompt="Reverse the digits: 1 2 3", sample_tokens=6)
    )
    recipe = write_sft_recipe(root / "sft.toml", sections, data_files)
    return recipe, sft(recipe, progress=False)


def test_every_kind_is_read_and_bad_records_are_counted_and_named(finished) -> None:
    _, result = finished
    chat, trajectories, preference, tasks = result.data.sources
    assert chat.skipped == {"no_assistant_turn": 1, "bad_tool_arguments": 1, "unmatched_tool_result": 1}
    assert (chat.truncated, chat.too_long) == (1, 1)
    assert chat.train_conversations + chat.val_conversations == 10  # 14 records - 3 skipped - 1 too long
    assert preference.train_conversations + preference.val_conversations == 12  # both orders of 6 pairs
    assert (tasks.train_conversations, tasks.val_conversations) == (30, 6)  # the Task records' own split
    assert trajectories.train_conversations + trajectories.val_conversations == 10
    run_dir = result.run.run_dir
    saved = json.loads((run_dir / DATA_SUMMARY).read_text())
    assert saved["sources"][0]["skipped"] == chat.skipped
    skipped = [json.loads(line) for line in (run_dir / SKIPPED).read_text().splitlines()]
    assert [(entry["origin"].rsplit(":", 1)[1], entry["kind"]) for entry in skipped] == [
        ("2", "no_assistant_turn"),
        ("3", "bad_tool_arguments"),
        ("4", "unmatched_tool_result"),
    ]


def test_validation_loss_equals_each_held_out_conversation_scored_alone(finished) -> None:
    """Independent of packing and of the loop's loss weighting: every held-out conversation (cut to the
    context) run on its own, cross-entropy summed over its assistant tokens, divided by their count."""
    recipe_path, result = finished
    recipe = load_sft_recipe(recipe_path)
    tokenizer = load_tokenizer(result.run.checkpoint / "tokenizer.json")
    model = K2ForCausalLM.from_pretrained(result.run.checkpoint).eval()
    loss_sum, count = 0.0, 0
    for source in recipe.sft.sources:
        fraction = recipe.sft.val_fraction if source.val_fraction is None else source.val_fraction
        for conversation in read_source(source).conversations:
            example = training_example(tokenizer, conversation, recipe.sft.seq_len, "k2-0905", "json")
            if example is None or not is_held_out(conversation, recipe.sft.seed, fraction):
                continue
            ids, mask = example.ids.tolist(), example.assistant_mask.tolist()
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0, :-1].double()
            targets = torch.tensor(ids[1:])
            losses = F.cross_entropy(logits, targets, reduction="none")
            trained = torch.tensor(mask[1:])
            loss_sum += float(losses[trained].sum())
            count += int(trained.sum())
    records = read_metrics(result.run.run_dir / "metrics.jsonl")
    assert records[-1].val_loss == result.run.final_val_loss
    assert result.run.final_val_loss == pytest.approx(loss_sum / count, rel=1e-5)


def test_the_loss_falls_and_every_step_counts_its_assistant_tokens(finished) -> None:
    _, result = finished
    records = read_metrics(result.run.run_dir / "metrics.jsonl")
    assert [r.step for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[-1].loss < records[0].loss
    assert all(0 < r.trained_tokens < r.tokens_seen for r in records)


def test_report_names_the_stage_and_the_data(finished) -> None:
    _, result = finished
    page = result.run.report.read_text()
    assert "OpenK2 SFT" in page and "too long 1" in page and "no_assistant_turn 1" in page
    assert result.run.sample.startswith("user: Reverse the digits: 1 2 3\nassistant: ")


def test_strict_refuses_the_run_naming_every_bad_record(finished, capsys, tmp_path: Path) -> None:
    recipe_path, result = finished
    strict = tmp_path / "strict.toml"
    strict.write_text(recipe_path.read_text().replace('name = "sft"', 'name = "strict"'))
    with pytest.raises(SystemExit) as stopped:
        main(["sft", "--recipe", str(strict), "--strict"])
    assert stopped.value.code == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "--strict: 3 unusable records" in error
    assert "chat.jsonl:2: messages: no assistant message" in error
    assert "chat.jsonl:4: messages[1].tool_call_id" in error
    assert not (result.run.run_dir.parent / "strict").exists()


def test_a_rerun_without_resume_refuses_before_touching_the_run(finished) -> None:
    recipe_path, result = finished
    summary_file = result.run.run_dir / DATA_SUMMARY
    written = summary_file.stat().st_mtime_ns
    with pytest.raises(ValueError, match="already holds checkpoints"):
        sft(recipe_path, progress=False)
    assert summary_file.stat().st_mtime_ns == written
