"""Fixtures for the reproduction scripts' tests: the scripts' directory on the path, shared quick shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPRO_DIR = Path(__file__).resolve().parents[2] / "repro"
MAX_PNG_BYTES = 200_000  # the committed plots stay small

if str(REPRO_DIR) not in sys.path:
    sys.path.insert(0, str(REPRO_DIR))


@pytest.fixture(scope="session")
def quick_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory of token shards for every script's reduced form (the first script builds them)."""
    return tmp_path_factory.mktemp("repro-data")


def run_quick(script: str, out: Path, data_root: Path, *extra: str) -> dict[str, Any]:
    """Run `repro/<script>.py --quick` as a user would; return its JSON after checking that its plot exists."""
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "MPLCONFIGDIR": str(out / "mpl"),
    }
    command = [sys.executable, str(REPRO_DIR / f"{script}.py"), "--quick", "--out", str(out)]
    finished = subprocess.run(
        [*command, "--data-root", str(data_root), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    plot = out / f"{script}-quick.png"
    assert plot.is_file() and 0 < plot.stat().st_size < MAX_PNG_BYTES
    return json.loads((out / f"{script}-quick.json").read_text())
