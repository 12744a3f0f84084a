"""`openk2 gym list | show | filter` through the real command-line entry point."""

import json
import subprocess
import sys

import pytest

from openk2.cli import main


def test_list_names_every_environment(capsys):
    main(["gym", "list"])
    output = capsys.readouterr().out
    for name in ("math", "logic", "instruction", "code", "tool", "safety", "faithfulness"):
        assert name in output


def test_show_prints_tasks_and_jsonl(capsys):
    main(
        [
            "gym",
            "show",
            "math",
            "--split",
            "test",
            "-n",
            "2",
            "--set",
            "difficulty=1",
            "--set",
            'sources=["arithmetic"]',
        ]
    )
    output = capsys.readouterr().out
    assert output.count("== math/arithmetic/") == 2 and "[answer]" in output
    main(["gym", "show", "logic", "-n", "2", "--set", 'sources=["morse"]', "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["env"] for record in records] == ["logic", "logic"]


def test_a_bad_setting_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["gym", "show", "math", "--set", "difficulty=9"])
    assert exit_.value.code == 2
    assert "math: difficulty: Input should be less than or equal to 5" in capsys.readouterr().err


def test_the_gym_cli_module_does_not_import_torch():
    code = "import sys, openk2.gym.cli, openk2.gym; print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


def test_filter_runs_a_checkpoint_and_writes_the_filtered_file(tmp_path, capsys):
    """A real OpenK2 engine on the scripted checkpoint: it answers "Sunny, 18C." to everything, so every
    task is too hard and none is kept; the per-task counts are written."""
    from tests.llm.checkpoints import write_scripted_checkpoint

    checkpoint = write_scripted_checkpoint(tmp_path / "checkpoint")
    output = tmp_path / "moderate.jsonl"
    arguments = [
        "gym",
        "filter",
        "logic",
        "-n",
        "2",
        "--set",
        'sources=["morse"]',
        "--set",
        "verifier_workers=0",
    ]
    main(
        [
            *arguments,
            "--samples",
            "2",
            "--max-tokens",
            "16",
            "--checkpoint",
            str(checkpoint),
            "--output",
            str(output),
        ]
    )
    assert "kept 0 of 2 tasks" in capsys.readouterr().out
    assert output.read_text() == ""
    progress = [
        json.loads(line) for line in (tmp_path / "moderate.jsonl.progress.jsonl").read_text().splitlines()
    ]
    assert [record["passes"] for record in progress] == [0, 0]
