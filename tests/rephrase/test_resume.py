"""`openk2 rephrase` stopped mid-run resumes without losing or repeating a document: killed (SIGKILL, a torn
last line) or interrupted (Ctrl-C, which stops within seconds and prints the command that resumes).

The rewriter is the scripted checkpoint (tests/llm/checkpoints.py), named in the recipe and loaded by the
`openk2` subprocess like any checkpoint; it answers every chunk with the same short sentence, so every
document is rejected. These tests are about the run directory, not about a model.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openk2.rephrase.config import load_rephrase_config
from openk2.rephrase.pipeline import rephrase_corpus
from tests.llm.checkpoints import write_scripted_checkpoint

DOCUMENTS, VARIANTS = 60, 2
ITEMS = DOCUMENTS * VARIANTS
START_TIMEOUT_S = 120  # the subprocess imports torch and loads the model before the first document
STOP_TIMEOUT_S = 60  # Ctrl-C cancels the running requests: seconds, even on a busy machine


@pytest.fixture(scope="module")
def scripted_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripted_checkpoint(tmp_path_factory.mktemp("scripted"))


def prepare(tmp_path: Path, checkpoint: Path) -> tuple[list[str], Path, Path, Path]:
    """(the `openk2 rephrase` arguments, the input, the recipe, the run directory)."""
    documents = tmp_path / "docs.jsonl"
    documents.write_text(
        "".join(
            json.dumps(
                {"id": f"reef-{index}", "text": f"In {1900 + index} divers counted {index + 3} turtles."}
            )
            + "\n"
            for index in range(DOCUMENTS)
        )
    )
    recipe = tmp_path / "rephrase.toml"
    recipe.write_text(
        f'[rephrase]\nvariants = {VARIANTS}\nconcurrency = 2\ntemperature = 0.0\ntokenizer = "{checkpoint}"\n'
        f'[rephrase.rewriter]\nbackend = "checkpoint"\ncheckpoint = "{checkpoint}"\n'
    )
    output = tmp_path / "out"
    arguments = ["rephrase", "--recipe", str(recipe), "--input", str(documents), "--output", str(output)]
    return arguments, documents, recipe, output


def start(arguments: list[str]) -> subprocess.Popen[str]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(
        [sys.executable, "-m", "openk2", *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_a_finished_document(output: Path, run: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while (not output.exists() or finished_lines(output) < 1) and run.poll() is None:
        assert time.monotonic() < deadline, "the first document never finished"
        time.sleep(0.01)
    assert run.poll() is None, "the run ended before it could be stopped"


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


def expected_ids() -> list[str]:
    return sorted(
        f"reef-{index}#knowledge-{variant}" for index in range(DOCUMENTS) for variant in range(VARIANTS)
    )


def test_a_killed_run_resumes_without_losing_or_duplicating_a_document(tmp_path, scripted_checkpoint):
    arguments, documents, recipe, output = prepare(tmp_path, scripted_checkpoint)
    run = start(arguments)
    wait_for_a_finished_document(output, run)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    before_kill = read_records(output)
    assert 1 <= len(before_kill) < ITEMS, "the kill must land mid-run"
    with (output / "rejects.jsonl").open("ab") as file:
        file.write(b'{"id": "torn-by-the-kill", "te')  # a write the kill cut short

    summary = rephrase_corpus(load_rephrase_config(recipe, {}), documents, output, progress=False)

    records = read_records(output)
    assert sorted(record["id"] for record in records) == expected_ids()  # each once, the torn line gone
    assert all(record in records for record in before_kill)  # finished documents kept as written
    assert summary.processed_this_run == ITEMS - len(before_kill)
    assert (summary.accepted + summary.rejected, summary.items) == (ITEMS, ITEMS)
    assert summary.cache_hits + summary.cache_misses > 0


def test_ctrl_c_stops_keeps_the_finished_documents_and_prints_the_command_that_resumes(
    tmp_path, scripted_checkpoint
):
    arguments, _, _, output = prepare(tmp_path, scripted_checkpoint)
    run = start(arguments)
    wait_for_a_finished_document(output, run)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=STOP_TIMEOUT_S)

    assert run.returncode == 130 and "Traceback" not in stderr, stderr
    kept = read_records(output)
    assert 1 <= len(kept) < ITEMS
    resume = f"openk2 {shlex.join(arguments)}"
    assert (
        f"interrupted: {len(kept)} of {ITEMS} documents are finished and kept in {output}; resume with: {resume}"
        in (stderr.splitlines())
    )
    # off a terminal, progress comes as plain lines: the first one as soon as a document finished
    assert re.search(
        rf"^rephrasing: \d+/{ITEMS} documents \(\d+%\) \| \d+ accepted, \d+ rejected \|", stderr, re.M
    )

    resumed = start(shlex.split(resume)[1:])  # the printed command, run as `python -m openk2`
    stdout, stderr = resumed.communicate(timeout=START_TIMEOUT_S)
    assert resumed.returncode == 0, stderr
    records = read_records(output)
    assert sorted(record["id"] for record in records) == expected_ids()
    assert all(record in records for record in kept)
    assert f"this run: {ITEMS - len(kept)} in" in stdout
