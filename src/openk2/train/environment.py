"""Where each training session ran: the machine, its threads and the library versions, for the report.

Tokens per second mean little without the machine that produced them, and a result is reproduced with the
same versions. Rank 0 appends one line per session to `<run_dir>/sessions.jsonl` as the session starts.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from openk2.io import JsonlLog

SESSIONS_FILE = "sessions.jsonl"
VERSIONED = ("openk2", "torch", "numpy", "safetensors", "tokenizers", "pydantic")


class SessionEnvironment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    from_step: int  # the step the session started after (0: a fresh run)
    host: str
    system: str  # operating system and architecture
    cpu: str
    cpu_cores: int
    torch_threads: int  # intra-op threads per process
    processes: int  # the world size under torchrun
    versions: dict[str, str]  # Python and the libraries the numbers depend on

    def describe(self) -> str:
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        return (
            f"{self.host}: {self.cpu} ({self.cpu_cores} cores), {self.system}; {self.processes} process(es) × "
            f"{self.torch_threads} torch thread(s); {versions}"
        )


def current_environment(from_step: int, processes: int) -> SessionEnvironment:
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return SessionEnvironment(
        from_step=from_step,
        host=platform.node(),
        system=f"{platform.system()} {platform.release()} {platform.machine()}",
        cpu=_cpu_model(),
        cpu_cores=os.cpu_count() or 0,
        torch_threads=torch.get_num_threads(),
        processes=processes,
        versions=versions,
    )


def record_session(run_dir: Path, environment: SessionEnvironment) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    JsonlLog(run_dir / SESSIONS_FILE).append(environment.model_dump())


def read_sessions(run_dir: Path) -> list[SessionEnvironment]:
    """The sessions that trained this run, oldest first; none for a run from before they were recorded."""
    path = run_dir / SESSIONS_FILE
    return (
        [SessionEnvironment.model_validate(record) for record in JsonlLog(path).records]
        if path.exists()
        else []
    )


def _cpu_model() -> str:
    """The processor's marketing name on Linux (platform.processor() is often empty there)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
