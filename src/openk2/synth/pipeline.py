"""`openk2 synth`: the three stages of K2 report Fig. 8 over one run directory.

    DIR/synth.json           what the outputs depend on; a resumed run must match it
    DIR/cache.jsonl          every model reply by a hash of its request (a rerun asks nothing twice)
    DIR/tools.jsonl          stage 1: the tool repository (real + synthetic), tool_rejects.jsonl, repository.json
    DIR/tool_map.png/.json   the Fig. 9-like map
    DIR/agents.jsonl         stage 2: agents (system prompt + tool subset)
    DIR/tasks.jsonl          stage 2: gym Tasks with rubrics, task_rejects.jsonl
    DIR/trajectories.jsonl   stage 3: judged and kept gym Trajectories (what `openk2 sft` reads)
    DIR/rejects.jsonl        stage 3: every rejected episode with the rubric item that failed
    DIR/summary.json, DIR/report.html

Stages 1 and 2 write their files atomically when they finish (their progress lives in the reply
cache: a killed stage replays its finished replies from it); a stage whose output exists is done.
Stage 3 commits each episode as one fsync'd line of `trajectories.jsonl` or `rejects.jsonl`, so a
SIGKILL loses at most the episodes in flight and a rerun plays exactly the tasks that have no line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from openk2.gym.records import Task, Trajectory, read_records
from openk2.io import JsonlLog, ReplyCache, atomic_write_text
from openk2.llm import LLM
from openk2.synth.models import Accounting, Role, RoleLLM, load_role_models
from openk2.synth.real_tools import RealTools, import_real_tools
from openk2.synth.recipe import SynthRecipe
from openk2.synth.tools import ToolRecord

Stage = Literal["tools", "tasks", "run"]
STAGES: tuple[Stage, ...] = ("tools", "tasks", "run")
MANIFEST_FILE = "synth.json"
TOOLS_FILE = "tools.jsonl"
TOOL_REJECTS_FILE = "tool_rejects.jsonl"
REPOSITORY_FILE = "repository.json"
AGENTS_FILE = "agents.jsonl"
TASKS_FILE = "tasks.jsonl"
TASK_REJECTS_FILE = "task_rejects.jsonl"
TRAJECTORIES_FILE = "trajectories.jsonl"
REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


class SynthStopped(RuntimeError):
    """A model became unavailable; finished work is kept and a rerun resumes."""


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return JsonlLog(path).records if path.exists() else []


def check_manifest(output: Path, settings: dict[str, Any]) -> None:
    """Record what the outputs depend on, or refuse to resume a run made with other settings."""
    path = output / MANIFEST_FILE
    if not path.exists():
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"settings": settings}, indent=2, ensure_ascii=False) + "\n")
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))["settings"]
    changed = sorted(
        key for key in recorded.keys() | settings.keys() if recorded.get(key) != settings.get(key)
    )
    if changed:
        raise ValueError(
            f"{path}: this directory holds a run with other settings ({', '.join(f'[synth].{key}' for key in changed)}); "
            "use another --output directory or delete this one"
        )


class SynthRun:
    """One run directory and what its stages share: the reply cache, the accounting, models, servers."""

    def __init__(
        self,
        recipe: SynthRecipe,
        progress: bool = True,
        models: dict[Role, LLM] | None = None,
        embed: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.recipe = recipe
        self.output = recipe.output
        self.progress = progress
        self._models = models  # given (tests: scripted models) or loaded on first use
        self._loaded: list[LLM] = []
        self._embed = embed
        self._real: RealTools | None = None
        self.accounting = Accounting()
        check_manifest(self.output, recipe.stage_settings())
        self.cache = ReplyCache(self.output / "cache.jsonl")

    # --- shared resources ------------------------------------------------------------------------

    def role(self, role: Role) -> RoleLLM:
        if self._models is None:
            self._models, self._loaded = load_role_models(
                self.recipe.models.by_role(), self.recipe.concurrency
            )
        return RoleLLM(role, self._models[role], self.cache, self.accounting)

    def embed(self, texts: list[str]) -> Any:
        if self._embed is None:
            from openk2.synth.embeddings import SentenceEmbedder

            self._embed = SentenceEmbedder().encode
        return self._embed(texts)

    @property
    def real_tools(self) -> RealTools:
        if self._real is None:
            self._real = import_real_tools(self.recipe.tools, self.output / "workspace")
        return self._real

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
            self._real = None
        for llm in self._loaded:
            llm.close()
        self._loaded.clear()

    def done(self, stage: Stage) -> bool:
        if stage == "tools":
            return (self.output / TOOLS_FILE).exists()
        if stage == "tasks":
            return (self.output / TASKS_FILE).exists()
        return False

    # --- stage 1 ---------------------------------------------------------------------------------

    def tools_stage(self) -> None:
        from openk2.synth.embeddings import tool_text
        from openk2.synth.repository import synthesise_tools
        from openk2.synth.tool_map import map_points, render_map_png, tsne_layout

        real = self.real_tools
        repository = asyncio.run(
            synthesise_tools(
                self.recipe, self.role("generator"), real.report.tools, self.embed, self.progress
            )
        )
        tools = repository.tools
        vectors = self.embed([tool_text(t.name, t.description, t.parameters) for t in tools])
        points = map_points(tools, tsne_layout(vectors, self.recipe.seed))
        (self.output / "tool_map.png").write_bytes(render_map_png(points))
        write_jsonl(self.output / "tool_map.json", points)
        imported: dict[str, int] = {}
        for tool in real.report.tools:
            imported[tool.provenance["server"]] = imported.get(tool.provenance["server"], 0) + 1
        details = {
            "servers": {
                "imported": imported,
                "skipped": real.report.skipped_servers,
                "skipped_tools": real.report.skipped_tools,
            },
            "domains": repository.domains,
            "notes": repository.notes,
        }
        atomic_write_text(
            self.output / REPOSITORY_FILE, json.dumps(details, indent=2, ensure_ascii=False) + "\n"
        )
        write_jsonl(self.output / TOOL_REJECTS_FILE, repository.rejects)
        write_jsonl(
            self.output / TOOLS_FILE, [tool.model_dump(mode="json") for tool in tools]
        )  # the commit point

    def tools(self) -> list[ToolRecord]:
        path = self.output / TOOLS_FILE
        if not path.exists():
            raise ValueError(f"{path}: missing; run `openk2 synth tools` first")
        return [ToolRecord.model_validate(record) for record in read_jsonl(path)]

    # --- stage 2 ---------------------------------------------------------------------------------

    def tasks_stage(self) -> None:
        from openk2.synth.task_stage import synthesise_tasks

        agents, tasks, rejects = asyncio.run(
            synthesise_tasks(self.recipe, self.role("generator"), self.tools(), self.progress)
        )
        write_jsonl(self.output / AGENTS_FILE, agents)
        write_jsonl(self.output / TASK_REJECTS_FILE, rejects)
        write_jsonl(
            self.output / TASKS_FILE, [task.model_dump(mode="json", exclude_none=True) for task in tasks]
        )

    def tasks(self) -> list[Task]:
        path = self.output / TASKS_FILE
        if not path.exists():
            raise ValueError(f"{path}: missing; run `openk2 synth tasks` first")
        return read_records(path, Task)

    # --- stage 3 ---------------------------------------------------------------------------------

    def run_stage(self) -> None:
        from openk2.synth.episodes import play_tasks

        tasks = self.tasks()
        tools = {tool.name: tool for tool in self.tools()}
        kept, rejects = JsonlLog(self.output / TRAJECTORIES_FILE), JsonlLog(self.output / REJECTS_FILE)
        postponed = asyncio.run(play_tasks(self, tasks, tools, kept, rejects))
        order = {f"{task.id}#0": position for position, task in enumerate(tasks)}
        kept.rewrite_sorted(order)  # task order, whatever order the episodes finished in
        rejects.rewrite_sorted(order)
        if postponed:
            raise SynthStopped(
                f"{len(postponed)} episodes stopped because a model was unavailable ({postponed[0]}); "
                f"finished episodes are kept in {self.output}; rerun the same command to resume"
            )

    def trajectories(self) -> list[Trajectory]:
        path = self.output / TRAJECTORIES_FILE
        return read_records(path, Trajectory) if path.exists() else []


def synthesise(
    recipe: SynthRecipe,
    stages: tuple[Stage, ...] = STAGES,
    progress: bool = True,
    models: dict[Role, LLM] | None = None,
    embed: Callable[[list[str]], Any] | None = None,
) -> dict[str, Any]:
    """Run `stages` (a finished stage 1 or 2 is not redone), then write summary.json and report.html."""
    from openk2.synth.report import write_report
    from openk2.synth.summary import summarize

    run = SynthRun(recipe, progress, models, embed)
    try:
        for stage in stages:
            if not run.done(stage):
                getattr(run, f"{stage}_stage")()
        summary = summarize(run)
        atomic_write_text(
            recipe.output / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
        )
        write_report(recipe.output, summary)
        return summary
    finally:
        run.close()
