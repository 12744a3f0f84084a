"""SIGKILL during `synth run`, then resume: every task ends up exactly once in trajectories + rejects.

The run is a real subprocess with scripted models (tests/synth/run_scripted.py), its agent slowed down
so the kill lands while episodes are in flight; the resumed run is the same command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from openk2.gym.records import Task, read_records
from openk2.synth import synthesise
from tests.synth.scripted_world import bag_of_words, scripted_models
from tests.synth.synth_recipe import small_recipe

ROOT = Path(__file__).resolve().parents[2]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigkill_during_run_then_resume_plays_every_task_once(tmp_path):
    output = tmp_path / "run"
    recipe = small_recipe(output, concurrency=2)
    synthesise(recipe, ("tools", "tasks"), progress=False, models=scripted_models(), embed=bag_of_words)
    tasks = read_records(output / "tasks.jsonl", Task)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.synth.run_scripted", str(output), "0.4"], cwd=ROOT, env=environment
    )
    try:
        deadline = time.monotonic() + 120
        while len(lines(output / "trajectories.jsonl")) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = len(lines(output / "trajectories.jsonl")) + len(lines(output / "rejects.jsonl"))
    assert 2 <= killed_at < len(tasks)

    summary = synthesise(recipe, ("run",), progress=False, models=scripted_models(), embed=bag_of_words)
    played = [
        record["task_id"] for record in lines(output / "trajectories.jsonl") + lines(output / "rejects.jsonl")
    ]
    assert sorted(played) == sorted(task.id for task in tasks)  # each exactly once
    assert summary["trajectories"]["played"] == len(tasks)
    # the resumed run asked again only what the killed one had not finished and cached
    assert summary["cache"]["hits"] > 0
