"""Launching a test's helper script under real `torchrun --standalone` on gloo, one thread per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def torchrun(script: str, *args: str, result: Path, processes: int = 2, timeout: int = 180) -> dict[str, Any]:
    """Run tests/train/`script` ARGS RESULT on `processes` ranks; the JSON its rank 0 wrote to `result`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    completed = subprocess.run(
        [*command, str(HERE / script), *args, str(result)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(result.read_text())
