"""`openk2 run`: every stage of the plan in order, each through its own `openk2` command in a subprocess.

A subprocess per stage keeps the stages apart as a user would run them: its own memory (freed when it
ends), its own kill and resume semantics, its own output (teed into `<stage>/log.txt`), and a command the
plan prints that reruns it alone. Current stages are skipped, interrupted ones resumed, stale ones redone
(openk2.run.ledger).
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import tomli_w
from rich.console import Console

from openk2.io import atomic_write_bytes, atomic_write_text
from openk2.progress import ProgressReport
from openk2.run.ledger import StageRecord, mark_finished, mark_started, stage_key, stage_status
from openk2.run.recipe import PipelineRecipe
from openk2.run.stages import Stage, without_empty_sources

Action = Literal["ran", "resumed", "skipped"]


class StageFailed(Exception):
    """A stage's command exited with an error; its log holds the reason."""


@dataclass(frozen=True)
class StageOutcome:
    stage: Stage
    action: Action
    record: StageRecord  # its stage.json: the key, the output digest, the seconds it took
    notes: tuple[str, ...] = ()  # what the stage was run without (an empty optional source)


def run_stages(stages: list[Stage], console: Console) -> list[StageOutcome]:
    """Every stage in order; returns what happened to each."""
    outcomes: list[StageOutcome] = []
    digests: dict[str, str] = {}
    with ProgressReport("openk2 run", len(stages), "stages", console) as progress:
        for index, stage in enumerate(stages):
            progress.update(index, stage.name)
            outcome = run_stage(stage, digests, progress)
            digests[stage.name] = outcome.record.output_digest
            outcomes.append(outcome)
        progress.update(len(stages), "done")
    return outcomes


def run_stage(stage: Stage, digests: dict[str, str], progress: ProgressReport) -> StageOutcome:
    stage, notes = without_empty_sources(stage)
    for note in notes:
        progress.note(f"── {stage.name}: {note}")
    inputs = {name: digests[name] for name in stage.inputs}
    key = stage_key(stage.shell_commands(), stage.recipe, inputs)
    status, finished = stage_status(stage.directory, key)
    if status == "current" and finished is not None:
        progress.note(
            f"── {stage.name}: current, skipped (ran in {finished.seconds:.0f} s, {finished.finished})"
        )
        return StageOutcome(stage, "skipped", finished, tuple(notes))
    if status == "new" and stage.directory.exists():  # settings or inputs changed: start over
        shutil.rmtree(stage.directory)
    stage.directory.mkdir(parents=True, exist_ok=True)
    action: Action = "resumed" if status == "interrupted" else "ran"
    progress.note(f"── {stage.name}: {stage.title}" + (" (resuming)" if action == "resumed" else ""))
    if stage.recipe is not None:
        atomic_write_text(stage.recipe_file, tomli_w.dumps(stage.recipe))
    record = StageRecord(
        stage=stage.name, key=key, command=stage.shell_commands(), inputs=inputs, output=stage.output
    )
    mark_started(stage.directory, record)
    started = time.monotonic()
    with stage.log_file.open("a", encoding="utf-8") as log:
        outputs = [_run_command(stage, command, log, progress) for command in stage.commands]
    if stage.stdout_to is not None:
        atomic_write_bytes(stage.stdout_to, b"".join(outputs))
    seconds = time.monotonic() - started
    return StageOutcome(stage, action, mark_finished(stage.directory, record, seconds), tuple(notes))


def _run_command(stage: Stage, command: list[str], log: IO[str], progress: ProgressReport) -> bytes:
    """One `openk2` command; its lines go to the log and the console (its standard output, when that is the
    stage's output file, is returned instead)."""
    # torchrun as `python -m torch.distributed.run`: the interpreter running openk2 run, whatever PATH holds
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", *stage.launcher[1:]]
        if stage.launcher
        else [sys.executable]
    )
    argv = [*launcher, "-m", "openk2", *command]
    log.write(f"$ {shlex.join([*stage.program, *command])}\n")
    log.flush()
    capture = stage.stdout_to is not None
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture else subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_die_with_parent,
    )
    output = b""
    try:
        if capture:
            output, errors = process.communicate()
            _echo(errors.decode(errors="replace").splitlines(), log, progress)
        else:
            assert process.stdout is not None
            for line in process.stdout:
                _echo([line.decode(errors="replace").rstrip("\n")], log, progress)
        process.wait()
    except BaseException:  # Ctrl-C reached the stage too (same process group); let it stop cleanly
        process.wait()
        raise
    if process.returncode != 0:
        raise StageFailed(
            f"stage {stage.name} failed (exit {process.returncode}); its log: {stage.log_file}; "
            f"to run it alone: {stage.shell_commands()[stage.commands.index(command)]}"
        )
    return output


def _echo(lines: list[str], log: IO[str], progress: ProgressReport) -> None:
    for line in lines:
        log.write(line + "\n")
        progress.note(f"   {line}")
    log.flush()


def _die_with_parent() -> None:
    """Linux: the stage is killed when `openk2 run` is (SIGKILL included), so that a rerun never races an
    orphaned stage still writing the same directory."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def plan_lines(recipe: PipelineRecipe, stages: list[Stage], skipped: list[str]) -> list[str]:
    """What `openk2 run` prints first: every stage and the command that runs it alone."""
    lines = [f"openk2 run {recipe.path}: {len(stages)} stages into {recipe.root}/"]
    for index, stage in enumerate(stages, start=1):
        lines.append(f"{index:>2}. {stage.name:<14} {stage.title}")
        lines += [f"      {command}" for command in stage.shell_commands()]
    lines += [f"    not run: {note}" for note in skipped]
    return lines


def serve_lines(checkpoint: Path) -> list[str]:
    """How to talk to the result."""
    return [
        f"The result: {checkpoint}",
        f"  openk2 serve --checkpoint {checkpoint}        # OpenAI-compatible, http://127.0.0.1:8000/v1",
        "  curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\",
        '       -d \'{"messages": [{"role": "user", "content": "Reverse 639"}], "max_tokens": 16}\'',
        "  python -c \"from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='-'); "
        "print(c.chat.completions.create(model=c.models.list().data[0].id, "
        "messages=[{'role': 'user', 'content': 'Reverse 639'}]).choices[0].message.content)\"",
    ]
