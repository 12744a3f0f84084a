"""`openk2 eval` on the tiny checkpoints of two stages, then `openk2 eval compare`: the change between
pre-training and SFT is visible side by side (tests/eval/stages.py builds both in seconds)."""

import json

import pytest

from openk2.cli import main
from tests.eval.stages import pretrained_checkpoint, sft_checkpoint


@pytest.mark.long
def test_stage_by_stage_results_side_by_side(tmp_path, capsys):
    pretrained = pretrained_checkpoint(tmp_path / "pretrain")
    sft = sft_checkpoint(pretrained, tmp_path / "sft")
    for stage, checkpoint in (("pretrain", pretrained), ("sft", sft)):
        main(["eval", "--model", str(checkpoint), "--suite", "arithmetic", "--n", "20", "--max-tokens", "16",
              "--output", str(tmp_path / f"eval-{stage}"), "--no-progress"])  # fmt: skip
    scores = {
        stage: {s["metric"]: s["value"] for s in json.loads((tmp_path / f"eval-{stage}" / "results.json").read_text())["suites"][0]["scores"]}
        for stage in ("pretrain", "sft")
    }  # fmt: skip
    # the pre-trained model continues text; SFT taught it to answer in the format the task asks for
    assert scores["pretrain"]["answer_marked"] <= 0.1 and scores["sft"]["answer_marked"] >= 0.9

    capsys.readouterr()
    html = tmp_path / "stages.html"
    main(
        [
            "eval",
            "compare",
            str(tmp_path / "eval-pretrain"),
            str(tmp_path / "eval-sft"),
            "--all-metrics",
            "--html",
            str(html),
        ]
    )
    table = capsys.readouterr().out
    assert "pretrain" in table and "sft" in table  # one column per stage (same model names: run dirs)
    marked = next(line for line in table.splitlines() if "answer_marked" in line)
    assert "(+" in marked  # the SFT column shows its gain over the pre-trained one
    assert "answer_marked" in html.read_text()
