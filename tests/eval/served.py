"""`openk2 serve` as its own process on a loopback port, for tests that evaluate over HTTP."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def openk2_serve(model: list[str], log: Path, max_batch_size: int = 1) -> Iterator[str]:
    """Runs `openk2 serve MODEL...` until the block ends; yields its base URL. `model`: ["--teacher"] or
    ["--checkpoint", DIR]."""
    port = free_port()
    command = [sys.executable, "-m", "openk2", "serve", *model, "--port", str(port)]
    command += ["--max-batch-size", str(max_batch_size), "--threads", "1"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"openk2 serve exited with {process.returncode}:\n{log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"openk2 serve did not start in {START_TIMEOUT_S} s:\n{log.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
