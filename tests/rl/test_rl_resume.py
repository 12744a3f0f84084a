"""SIGKILL in the middle of an iteration, then `openk2 rl --resume`: no group is trained twice and no rollout
is lost. The kill comes after the checkpoint of iteration 2, once iteration 3 has logged some of its complete
groups; the resumed run trains iteration 3 on those logged groups (read back, not sampled again) plus the
rest, and every iteration's groups are trained exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from openk2.rl.metrics import IterationRecord
from openk2.train.metrics import read_metrics
from tests.rl.rl_setup import rl_sections, write_rl_recipe

REPO = Path(__file__).resolve().parents[2]
ITERATIONS = 5


def _start(recipe: Path, resume: bool) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "openk2",
        "rl",
        "--recipe",
        str(recipe),
        *(["--resume"] if resume else []),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _logged(rollouts: Path, iteration: int) -> list[str]:
    if not rollouts.exists():
        return []
    content = rollouts.read_text()
    lines = content[: content.rfind("\n") + 1].splitlines()
    return [line for line in lines if json.loads(line)["iteration"] == iteration]


@pytest.mark.long  # an RL run killed mid-iteration and resumed (~30 s after the shared warm-up)
def test_sigkill_mid_iteration_then_resume_trains_every_group_once(warm_policy: Path, tmp_path: Path) -> None:
    sections = rl_sections(
        tmp_path, warm_policy, name="killed",
        run=dict(steps=ITERATIONS, checkpoint_every=2, keep_checkpoints=2),
        rl=dict(eval={"every": 0}, max_concurrency=2, temperature={"start": 1.5, "end": 1.5}),
    )  # fmt: skip
    recipe = write_rl_recipe(tmp_path / "rl.toml", sections)
    run_dir = tmp_path / "killed"
    killed = _start(recipe, resume=False)
    deadline = time.monotonic() + 300
    while not ((run_dir / "checkpoints" / "step_000002").exists() and _logged(run_dir / "rollouts.jsonl", 3)):
        assert killed.poll() is None and time.monotonic() < deadline, killed.stdout.read().decode()  # type: ignore[union-attr]
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    before_kill = _logged(run_dir / "rollouts.jsonl", 3)
    assert 0 < len(before_kill) < 8, "the kill did not land inside iteration 3"

    resumed = _start(recipe, resume=True)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output.decode()

    records = read_metrics(run_dir / "metrics.jsonl", IterationRecord)
    assert [r.step for r in records] == list(range(1, ITERATIONS + 1))
    trained = [group for r in records for group in r.trained_groups]
    assert not [group for group, count in Counter(trained).items() if count > 1], "a group was trained twice"
    assert all(group.startswith(f"i{r.step:05d}-") for r in records for group in r.trained_groups)
    # no rollout lost: iteration 3's groups logged before the kill are in the log unchanged, read back
    after = _logged(run_dir / "rollouts.jsonl", 3)
    assert all(line in after for line in before_kill)
    assert records[2].reused_groups == len(before_kill)
    logged_ids = Counter(
        json.loads(line)["group_id"] for line in (run_dir / "rollouts.jsonl").read_text().splitlines()
    )
    assert set(logged_ids.values()) == {1} and len(logged_ids) == 8 * ITERATIONS
