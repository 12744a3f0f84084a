"""Stage 3 of Fig. 8 (K2 report §3.1.1): multi-turn trajectories, judged and filtered.

Each task is played through `openk2.gym.rollout` in the `synth` environment:

    agent ──tool call──> real tool (MCP server, sandbox)   or   tool simulator (world model over JSON)
    agent ──text──────> user simulator (persona, goal, what the user knows; ends with ###STOP###)

Real execution is used where it is authentic (the MCP-backed tools call their server, the code tool
runs in the gym's sandbox); synthetic tools are simulated. Every call is recorded in the trajectory's
`env_final["calls"]` with who answered it and, for simulated ones, the injected outcome; `env_final
["state"]` is the simulated world at the end. The judge then scores the trajectory against its rubric:
kept ones go to trajectories.jsonl, the others to rejects.jsonl with the failing rubric items. Each
line is the commit point of its task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jsonschema

from openk2.chat import ChatFormatError, Message
from openk2.gym.environment import Environment, Episode, Source, Turn
from openk2.gym.envs.user_simulator import UserSimulator
from openk2.gym.records import Author, MessageMeta, Reward, RewardComponent, Split, Task, Trajectory
from openk2.gym.rollout import rollout
from openk2.io import JsonlLog
from openk2.llm import LLM, ChatRequest, Completion, SamplingParams
from openk2.synth.judge import check_tool_pattern, judge_trajectory, rubric_components
from openk2.synth.models import RoleLLM
from openk2.synth.progress import StageProgress
from openk2.synth.real_tools import RealTools
from openk2.synth.recipe import Outcome
from openk2.synth.repository import seed_of
from openk2.synth.tool_simulator import ToolSimulator
from openk2.synth.tools import ToolRecord

if TYPE_CHECKING:
    from openk2.synth.pipeline import SynthRun


class ForcedToolCalls(LLM):
    """The agent under `force_tool_calls`: `tool_choice="required"` while it has made fewer calls than the
    task's expected pattern, then its own choice, one call per forced turn (`parallel_tool_calls=False`: a
    small agent otherwise repeats the call until its reply budget cuts it). The grammar makes the calls
    well-formed; which tool it calls stays the model's decision."""

    def __init__(self, llm: LLM, calls: int) -> None:
        self.llm = llm
        self.calls = calls

    @property
    def model_name(self) -> str:
        return self.llm.model_name

    def _forced(self, request: ChatRequest) -> ChatRequest:
        if request.tools and request.calls_so_far < self.calls:
            return dataclasses.replace(request, tool_choice="required", parallel_tool_calls=False)
        return request

    async def achat(self, request: ChatRequest) -> Completion:
        return await self.llm.achat(self._forced(request))

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return self.llm.chat_batch([self._forced(request) for request in requests])


class SynthEnv(Environment):
    """The synthesis world: real tools where they exist, the tool simulator elsewhere, a simulated user."""

    name = "synth"
    kind = "tool_use"
    summary = "synthesised agents and rubric tasks; real MCP tools, simulated tools, simulated users"
    sources = (Source("synth", "openk2 synth (tasks.jsonl of a run)", "as the generator's outputs"),)

    def __init__(
        self,
        tools: dict[str, ToolRecord],
        real: RealTools | None,
        user: RoleLLM,
        simulator: RoleLLM,
        rates: Mapping[Outcome, float],
        seed: int,
        reply_tokens: int,
        temperature: float,
    ) -> None:
        super().__init__()
        self.tool_records = tools
        self.real = real
        self.user = user
        self.simulator = simulator
        self.rates = rates
        self.seed = seed
        self.reply_tokens = reply_tokens
        self.temperature = temperature

    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        raise ValueError("synth: tasks come from a run's tasks.jsonl (`openk2 synth tasks`)")

    async def start(self, task: Task) -> Episode:
        if task.user is None:
            raise ValueError(f"{task.id}: user: a synth task needs a user scenario")
        sampling = SamplingParams(
            temperature=self.temperature,
            max_tokens=self.reply_tokens,
            seed=seed_of(self.seed, "user", task.id),
        )
        world = ToolSimulator(
            self.simulator, task.initial_state, self.rates, self.seed, task.id, temperature=self.temperature
        )
        return SynthEpisode(self, task, UserSimulator(self.user, task.user, sampling), world)

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        """What the conversation alone decides (the tool pattern); the judge adds the rest."""
        verdict = check_tool_pattern(task, list(messages))

        component = RewardComponent(
            name=verdict.name,
            score=float(verdict.passed),
            passed=verdict.passed,
            details={"reason": verdict.reason},
        )
        return Reward.combine([component])


class SynthEpisode(Episode):
    def __init__(self, env: SynthEnv, task: Task, user: UserSimulator, world: ToolSimulator) -> None:
        self.env = env
        self.task = task
        self.user = user
        self.world = world
        self.declared = {tool.function.name for tool in task.tools}
        self.calls: list[dict[str, Any]] = []

    async def respond(self, messages: Sequence[Message]) -> Turn:
        last = messages[-1]
        if last.role == "assistant" and last.tool_calls:
            results, meta = [], []
            for call in last.tool_calls:
                content, author, error = await self._execute(
                    call.function.name, json.loads(call.function.arguments)
                )
                results.append(
                    Message(role="tool", tool_call_id=call.id, name=call.function.name, content=content)
                )
                model = self.world.llm.model_name if author == "tool_sim" else None
                meta.append(
                    MessageMeta(author=author, model=model, sampled=author == "tool_sim", error=error)
                )
            return Turn(results, meta)
        reply, stop = await self.user.reply(messages)
        meta = [MessageMeta(author="user_sim", model=self.user.llm.model_name, sampled=True)]
        return Turn([reply], meta, done=stop, termination="user_stop" if stop else None)

    async def _execute(self, name: str, arguments: dict[str, Any]) -> tuple[str, Author, str | None]:
        """(the tool message's content, its author, its error)."""
        record = self.env.tool_records.get(name)
        if name not in self.declared or record is None:
            self.calls.append({"tool": name, "executor": "none", "error": "unknown tool"})
            return f"Error: no tool named {name!r}", "env", f"unknown_tool: {name}"
        invalid = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(record.parameters).iter_errors(arguments)
        )
        if invalid is not None:  # what an API answers to bad arguments, before any execution
            where = "".join(f".{part}" for part in invalid.absolute_path)
            self.calls.append({"tool": name, "executor": "validation", "error": invalid.message})
            return (
                f"Error: invalid arguments{where}: {invalid.message}",
                "env",
                f"invalid_arguments{where}: {invalid.message}",
            )
        if not record.simulated:
            self.world.index += 1  # keep the simulator's outcome draws at fixed call positions
            assert self.env.real is not None
            try:
                content, failed = await self.env.real.call(name, arguments, self.task.id)
            except Exception as error:  # the server broke or timed out: the agent sees an error, as it would
                message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                self.calls.append(
                    {"tool": name, "executor": record.origin, "error": f"real_tool_failure: {message}"}
                )
                return f"Error: {message}", "tool_exec", f"real_tool_failure: {message}"
            self.calls.append(
                {"tool": name, "executor": record.origin, "error": content[:200] if failed else None}
            )
            return content, "tool_exec", content[:500] if failed else None
        simulated = await self.world.call(record, arguments)
        self.calls.append(
            {
                "tool": name,
                "executor": "simulator",
                "outcome": simulated.outcome,
                "changes": simulated.changes,
                "error": simulated.error,
            }
        )
        if simulated.result is None:
            return f"Error: {simulated.error}", "tool_sim", simulated.error
        return json.dumps(simulated.result, ensure_ascii=False), "tool_sim", simulated.error

    @property
    def final_state(self) -> dict[str, Any] | None:
        return {"state": self.world.state, "calls": self.calls}


async def play_tasks(
    run: SynthRun, tasks: list[Task], tools: dict[str, ToolRecord], kept: JsonlLog, rejects: JsonlLog
) -> list[str]:
    """Play every task without a line in `kept` or `rejects`; returns why postponed episodes stopped."""
    recipe = run.recipe
    finished = {record["task_id"] for record in kept.records + rejects.records}
    todo = [task for task in tasks if task.id not in finished]
    needs_real = {
        name
        for task in todo
        for name in (tool.function.name for tool in task.tools)
        if not tools[name].simulated
    }
    real = run.real_tools if needs_real else None
    if real is not None:
        missing = sorted(name for name in needs_real if name not in real)
        if missing:
            raise ValueError(
                f"tasks.jsonl: real tools {missing} have no running server ({real.report.skipped_servers})"
            )
    agent, user, simulator, judge = (run.role(role) for role in ("agent", "user", "tool_simulator", "judge"))
    gate = asyncio.Semaphore(recipe.concurrency)
    postponed: list[str] = []

    async def one(task: Task, bar: StageProgress) -> None:
        roles = [agent.fork(), user.fork(), simulator.fork(), judge.fork()]
        env = SynthEnv(
            tools,
            real,
            roles[1],
            roles[2],
            recipe.run.outcomes,
            recipe.seed,
            recipe.run.reply_tokens,
            recipe.run.temperature,
        )
        policy: LLM = roles[0]
        if recipe.run.force_tool_calls:
            policy = ForcedToolCalls(roles[0], len(task.verification.get("expected_tools", [])))
        sampling = SamplingParams(
            temperature=recipe.run.temperature,
            max_tokens=recipe.run.reply_tokens,
            seed=seed_of(recipe.seed, "agent", task.id),
        )
        async with gate:
            try:
                trajectory = await rollout(
                    env,
                    task,
                    policy,
                    sampling,
                    max_turns=recipe.run.max_turns,
                    trajectory_id=f"{task.id}#0",
                    group_id=task.id,
                    provenance=_provenance(task, roles),
                )
            except ChatFormatError as error:  # a request no model can serve (e.g. beyond the context)
                rejects.append(
                    {
                        "stage": "run",
                        "id": f"{task.id}#0",
                        "task_id": task.id,
                        "failed": ["request"],
                        "reason": str(error),
                    }
                )
                bar.finished("rejected")
                return
            verdicts = None
            if trajectory.status != "failed":
                judge_sampling = SamplingParams(
                    temperature=0.0, max_tokens=400, seed=seed_of(recipe.seed, "judge", task.id)
                )
                try:
                    verdicts = await judge_trajectory(roles[3], task, trajectory, judge_sampling)
                except Exception as error:  # the judge's model failed: postponed below when it went away
                    trajectory = trajectory.model_copy(
                        update={"error": f"judge: {type(error).__name__}: {error}"}
                    )
        unavailable = [role.unavailable for role in roles if role.unavailable]
        if unavailable:
            postponed.append(unavailable[0])
            bar.finished("postponed")
            return
        _commit(task, trajectory, verdicts, kept, rejects, roles[3].model_name)
        bar.finished("kept" if verdicts and all(v.passed for v in verdicts) else "rejected")

    with StageProgress("trajectories", len(tasks), "episodes", run.progress, done=len(finished)) as bar:
        await asyncio.gather(*(one(task, bar) for task in todo))
    return postponed


def _provenance(task: Task, roles: list[RoleLLM]) -> dict[str, Any]:
    return {
        "stage": "openk2.synth",
        "agent": task.metadata.get("agent"),
        "level": task.metadata.get("level"),
        "persona": task.user.persona if task.user else None,
        "models": {role.role: role.model_name for role in roles},
    }


def _commit(
    task: Task,
    trajectory: Trajectory,
    verdicts: list[Any] | None,
    kept: JsonlLog,
    rejects: JsonlLog,
    judge: str,
) -> None:
    if verdicts is None:  # the episode failed (infrastructure) or the judge could not be asked
        reason = trajectory.error or f"episode {trajectory.termination}"
        rejects.append(
            {
                "stage": "run",
                "id": trajectory.id,
                "task_id": task.id,
                "failed": ["episode"],
                "reason": reason,
                "trajectory": trajectory.model_dump(mode="json", exclude_none=True),
            }
        )
        return
    components = rubric_components(task, verdicts)
    reward = Reward.combine(components, "product")
    failed = [verdict for verdict in verdicts if not verdict.passed]
    judged = trajectory.model_copy(
        update={
            "rewards": components,
            "reward": reward.value,
            "judge": {
                "model": judge,
                "verdict": "reject" if failed else "keep",
                "items": [dataclasses.asdict(verdict) for verdict in verdicts],
            },
        }
    )
    record = judged.model_dump(mode="json", exclude_none=True)
    if not failed:
        kept.append(record)
        return
    rejects.append(
        {
            "stage": "run",
            "id": trajectory.id,
            "task_id": task.id,
            "failed": [verdict.name for verdict in failed],
            "reason": "; ".join(f"{verdict.name}: {verdict.reason}" for verdict in failed),
            "trajectory": record,
        }
    )
