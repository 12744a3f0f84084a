"""SIGKILL `openk2 run` while a stage runs, then run it again: the stages that had finished are skipped, the
interrupted one resumes from its own checkpoints, and the run ends with the same numbers as a run that was
never interrupted (seeded sampling, greedy evaluation). Long: two whole micro pipelines with RL and eval."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openk2.model import K2ForCausalLM
from tests.run.micro import REPO, micro_recipe, openk2_run, write_pipeline_recipe

STAGES = ("data", "pretrain", "tasks", "sft", "eval/sft", "rl", "eval/rl")


def pipeline(root: Path) -> Path:
    return write_pipeline_recipe(
        root / "recipe.toml", micro_recipe(root, rl=True, evaluate=True, longer=True)
    )


def numbers(root: Path) -> dict[str, object]:
    """What the report shows of a run: evaluation scores, training curves, the final weights."""
    run = root / "runs" / "micro"
    found: dict[str, object] = {}
    for stage in ("sft", "rl"):
        results = json.loads((run / "eval" / stage / "results.json").read_text())
        found[f"eval-{stage}"] = [suite["scores"] for suite in results["suites"]]
    for stage in ("pretrain", "sft", "rl"):
        records = [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines()]
        found[f"{stage} loss"] = [record.get("loss") for record in records]
        found[f"{stage} reward"] = [record.get("reward_mean") for record in records]
        final = json.loads((run / stage / "stage.json").read_text())["output"]
        found[f"{stage} weights"] = loaded_weights_hash(Path(final))
    return found


def loaded_weights_hash(checkpoint: Path) -> str:
    """The weights as the model loads them (shard files hold bookkeeping that differs between equal runs)."""
    state = K2ForCausalLM.from_pretrained(checkpoint).state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def processes_under(directory: Path) -> list[int]:
    """Processes whose command line names `directory` (an orphaned stage would)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if str(directory) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.long
@pytest.mark.parametrize("victim", ["pretrain", "rl"])
def test_a_killed_run_skips_finished_stages_resumes_the_interrupted_one_and_ends_equal(
    tmp_path: Path, victim: str
) -> None:
    uninterrupted = openk2_run(pipeline(tmp_path / "a"))
    assert uninterrupted.returncode == 0, uninterrupted.stdout[-3000:] + uninterrupted.stderr[-3000:]

    root = tmp_path / "b"
    recipe = pipeline(root)
    run = root / "runs" / "micro"
    process = subprocess.Popen(
        [sys.executable, "-m", "openk2", "run", "--recipe", str(recipe)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=REPO,
    )
    while not list((run / victim / "checkpoints").glob("step_*/manifest.json")):  # its first checkpoint
        assert process.poll() is None, "openk2 run ended before the stage to interrupt checkpointed"
        time.sleep(0.02)
    delay = random.Random().uniform(0.0, 1.0)  # somewhere after it, before or after the next ones
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(1.0)
    assert processes_under(root) == [], "a stage outlived openk2 run"
    finished = [stage for stage in STAGES if (run / stage / "stage.json").exists()]
    assert victim not in finished, (
        f"the {victim} stage finished within {delay:.1f} s; nothing was interrupted"
    )

    rerun = openk2_run(recipe)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    for stage in finished:
        assert f"── {stage.replace('eval/', 'eval-')}: current, skipped" in rerun.stdout
    assert (
        f"── {victim}: " in rerun.stdout
        and "(resuming)" in rerun.stdout.split(f"── {victim}: ")[1].split("\n")[0]
    )
    assert "resuming from" in (run / victim / "log.txt").read_text()  # from a checkpoint, not step 0
    assert numbers(root) == numbers(tmp_path / "a")
