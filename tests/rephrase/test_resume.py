"""`openk2 rephrase` killed mid-run (SIGKILL, a torn last line) resumes without losing or repeating a document."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from openk2.rephrase.config import load_rephrase_config
from openk2.rephrase.pipeline import rephrase_corpus
from tests.rephrase.conftest import write_documents

RECIPE = """
[rephrase]
variants = 2
concurrency = 2
temperature = 0.0
chunk_tokens = 64
judge_threshold = 1
[rephrase.checks]
names = false
min_length_ratio = 0.3
max_length_ratio = 3.0
"""
KILL_TIMEOUT_S = 300


def finished_lines(output: Path) -> int:
    return sum(
        (output / name).read_bytes().count(b"\n")
        for name in ("rephrased.jsonl", "rejects.jsonl")
        if (output / name).exists()
    )


def read_records(output: Path) -> list[dict]:
    return [
        json.loads(line)
        for name in ("rephrased.jsonl", "rejects.jsonl")
        if (output / name).exists()
        for line in (output / name).read_text().splitlines()
    ]


def test_a_killed_run_resumes_without_losing_or_duplicating_a_document(tmp_path, batching_teacher):
    ids = ["penicillin", "great-barrier-reef", "harrison-chronometer"]
    documents = write_documents(tmp_path / "docs.jsonl", ids)
    (tmp_path / "rephrase.toml").write_text(RECIPE)
    output = tmp_path / "out"
    command = [sys.executable, "-m", "openk2", "rephrase", "--recipe", str(tmp_path / "rephrase.toml")]
    command += ["--input", str(documents), "--output", str(output)]
    run = subprocess.Popen(
        command, env=os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while (not output.exists() or finished_lines(output) < 1) and run.poll() is None:
        assert time.monotonic() < deadline, "the first document never finished"
        time.sleep(0.1)
    run.send_signal(signal.SIGKILL)
    run.wait()
    before_kill = read_records(output)
    assert 1 <= len(before_kill) < 6, "the kill must land mid-run"
    with (output / "rephrased.jsonl").open("ab") as file:
        file.write(b'{"id": "torn-by-the-kill", "te')  # a write the kill cut short

    config = load_rephrase_config(tmp_path / "rephrase.toml", {})
    summary = rephrase_corpus(config, documents, output, progress=False, rewriter=batching_teacher)

    records = read_records(output)
    expected = sorted(f"{name}#knowledge-{variant}" for name in ids for variant in (0, 1))
    assert sorted(record["id"] for record in records) == expected  # each exactly once, the torn line gone
    assert all(record in records for record in before_kill)  # finished documents kept as written
    assert summary.processed_this_run == 6 - len(before_kill)
    assert (summary.accepted + summary.rejected, summary.items) == (6, 6)
    assert summary.cache_hits + summary.cache_misses > 0
