"""The small CI version of the end-to-end proof: all three stages on the embedded SmolLM2-135M-Instruct,
every role switched by the recipe to an OpenAI-compatible endpoint (`openk2 serve`'s app on loopback).

The full proof run (five real servers, >= 200 synthetic tools in 16 categories) is
`recipes/synth-embedded.toml`, about two hours here; its numbers are in docs/synthesis.md. This one makes
one synthetic tool, imports mcp-server-time, and plays one task: what it checks is that a real model's
replies, constrained to their schemas and sent over HTTP, carry the pipeline through to judged
trajectories; not what a 135M model writes.
"""

from __future__ import annotations

import json

import pytest

from openk2.gym.records import Task, Trajectory, read_records
from openk2.recipes import validate_recipe
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer
from openk2.synth import SynthRecipe, synthesise
from openk2.synth.models import ROLES
from openk2.synth.tools import ToolRecord, schema_problems


@pytest.mark.long  # about a minute of 135M-model decoding on two CPU cores
def test_the_embedded_model_over_http_carries_every_stage(teacher, tmp_path):
    with BackgroundServer(create_app(teacher)) as server:
        endpoint = {"backend": "endpoint", "base_url": server.base_url, "timeout_s": 600.0}
        table = {
            "output": str(tmp_path / "run"),
            "concurrency": 4,
            "models": dict.fromkeys(ROLES, endpoint),
            "tools": {
                "builtin_servers": ["time"],
                "categories": ["smart_home"],
                "domains_per_category": 1,
                "model_domains": False,
                "evolution_rounds": 0,
            },
            "tasks": {
                "agents": 1,
                "tools_per_agent": [2, 2],
                "real_tool_share": 1.0,
                "tasks_per_agent": 1,
                "levels": [2],
                "repetition_penalty": 1.2,
            },
            "run": {"max_turns": 2, "reply_tokens": 48, "force_tool_calls": True},
        }
        summary = synthesise(validate_recipe(SynthRecipe, table, "test", within="synth"), progress=False)
    output = tmp_path / "run"

    tools = [ToolRecord.model_validate(json.loads(line)) for line in (output / "tools.jsonl").open()]
    real = [tool for tool in tools if not tool.simulated]
    synthetic = [tool for tool in tools if tool.simulated]
    assert {tool.provenance["server"] for tool in real} == {"time"}
    assert len(synthetic) == 1 and schema_problems(synthetic[0].model_dump()) == []

    [task] = read_records(output / "tasks.jsonl", Task)
    assert [item.name for item in task.rubric][:2] == ["tool_pattern", "well_formed"]
    kept = read_records(output / "trajectories.jsonl", Trajectory)
    rejected = [json.loads(line) for line in (output / "rejects.jsonl").open()]
    [trajectory] = kept or [Trajectory.model_validate(record["trajectory"]) for record in rejected]
    assert trajectory.judge["verdict"] in ("keep", "reject") and all(record["failed"] for record in rejected)
    # the agent called tools, or the reply that failed to parse (a 135M model often runs past its
    # budget inside a call) is kept in the trajectory with its parse error
    unparsed = [meta.error for meta in trajectory.meta if meta.author == "policy" and meta.error]
    assert trajectory.env_final["calls"] or unparsed

    # the roles every episode needs were asked over HTTP (nothing from a cache), their tokens counted
    models = summary["models"]
    assert {"generator", "agent", "judge"} <= set(models)
    assert all(role["from_cache"] == 0 and role["completion_tokens"] > 0 for role in models.values())
