"""summary.json: acceptance per stage, turns, tool calls, failure kinds and tokens of a run."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

from openk2.synth.pipeline import (
    AGENTS_FILE,
    REJECTS_FILE,
    REPOSITORY_FILE,
    TASK_REJECTS_FILE,
    TASKS_FILE,
    TOOL_REJECTS_FILE,
    TOOLS_FILE,
    TRAJECTORIES_FILE,
    read_jsonl,
)

if TYPE_CHECKING:
    from openk2.synth.pipeline import SynthRun


def summarize(run: SynthRun) -> dict[str, Any]:
    output = run.output
    tools = read_jsonl(output / TOOLS_FILE)
    tool_rejects = read_jsonl(output / TOOL_REJECTS_FILE)
    tasks = read_jsonl(output / TASKS_FILE)
    task_rejects = read_jsonl(output / TASK_REJECTS_FILE)
    kept = read_jsonl(output / TRAJECTORIES_FILE)
    rejects = read_jsonl(output / REJECTS_FILE)
    repository = (
        json.loads((output / REPOSITORY_FILE).read_text()) if (output / REPOSITORY_FILE).exists() else {}
    )
    synthetic = [tool for tool in tools if tool["origin"] == "synthetic"]
    played = kept + [reject["trajectory"] for reject in rejects if "trajectory" in reject]
    return {
        "tools": {
            "real": len(tools) - len(synthetic),
            "real_by_server": dict(
                Counter(tool["category"] for tool in tools if tool["origin"] != "synthetic")
            ),
            "servers_skipped": repository.get("servers", {}).get("skipped", {}),
            "real_tools_skipped": len(repository.get("servers", {}).get("skipped_tools", [])),
            "synthetic": len(synthetic),
            "synthetic_by_category": dict(Counter(tool["category"] for tool in synthetic)),
            "categories": len({tool["category"] for tool in synthetic}),
            "domains": sum(len(domains) for domains in repository.get("domains", {}).values()),
            "by_step": dict(Counter(tool["provenance"]["step"] for tool in synthetic)),
            "candidates": len(synthetic) + len(tool_rejects),
            "acceptance": _rate(len(synthetic), len(synthetic) + len(tool_rejects)),
            "rejected_by_reason": dict(Counter(_reason_kind(r["reason"]) for r in tool_rejects)),
        },
        "tasks": {
            "agents": len(read_jsonl(output / AGENTS_FILE)),
            "tasks": len(tasks),
            "acceptance": _rate(len(tasks), len(tasks) + len(task_rejects)),
            "by_level": dict(Counter(str(task["metadata"]["level"]) for task in tasks)),
            "stateful": sum(1 for task in tasks if task.get("initial_state")),
            "rejected_by_reason": dict(Counter(_reason_kind(r["reason"] or "") for r in task_rejects)),
        },
        "trajectories": _trajectory_summary(kept, rejects, played, len(tasks)),
        "models": run.accounting.as_dict(),
        "cache": {"hits": run.cache.hits, "misses": run.cache.misses},
    }


def _trajectory_summary(
    kept: list[dict[str, Any]], rejects: list[dict[str, Any]], played: list[dict[str, Any]], tasks: int
) -> dict[str, Any]:
    calls = [call for trajectory in played for call in (trajectory.get("env_final") or {}).get("calls", [])]
    turns = [max((meta.get("turn", 0) for meta in t["meta"]), default=0) for t in played]
    failed_items = Counter(name for reject in rejects for name in reject["failed"])
    unparsed = sum(
        1
        for t in played
        for meta in t["meta"]
        if meta["author"] == "policy" and meta.get("error") is not None
    )
    return {
        "tasks": tasks,
        "played": len(played),
        "kept": len(kept),
        "rejected": len(rejects),
        "acceptance": _rate(len(kept), len(played)),
        "rejected_by_rubric_item": dict(failed_items.most_common()),
        "termination": dict(Counter(t.get("termination") for t in played)),
        "turns_mean": statistics.mean(turns) if turns else 0.0,
        "tool_calls": len(calls),
        "tool_calls_by_executor": dict(Counter(call["executor"] for call in calls)),
        "simulated_outcomes": dict(Counter(call["outcome"] for call in calls if "outcome" in call)),
        "failure_kinds": dict(Counter(_reason_kind(call["error"]) for call in calls if call.get("error"))),
        "unparsed_agent_replies": unparsed,
    }


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _reason_kind(reason: str) -> str:
    """A reason without its particulars, to count reasons by kind: what comes before its first colon,
    with quoted names and numbers blanked ("near-duplicate of '…' (cosine …)", "'…' is a required property")."""
    head = reason.split(":", 1)[0]
    return re.sub(r"\d+(\.\d+)?", "…", re.sub(r"'[^']*'", "'…'", head)).strip()[:60]
