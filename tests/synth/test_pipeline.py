"""`openk2 synth` end to end with scripted models (tests/synth/scripted_world.py): the pipeline, not a model.

The scripted generator writes distinct tools and tasks whose user request names the expected tool
pattern; the scripted agent follows it, the simulator sets the expected state, the judge passes every
item. So every task must come out as a kept trajectory, the repository must hold what the tree implies,
and a second run at another concurrency must write the same bytes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from openk2.gym.records import Task, Trajectory, read_records
from openk2.synth import synthesise
from openk2.synth.tools import ToolRecord
from tests.synth.scripted_world import bag_of_words, scripted_models
from tests.synth.synth_recipe import small_recipe

OUTPUTS = ("tools.jsonl", "agents.jsonl", "tasks.jsonl", "trajectories.jsonl", "rejects.jsonl")


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("synth") / "run"
    summary = synthesise(small_recipe(output), progress=False, models=scripted_models(), embed=bag_of_words)
    return output, summary


def test_repository_follows_the_domain_tree(scripted_run):
    output, summary = scripted_run
    tools = [
        ToolRecord.model_validate(json.loads(line))
        for line in (output / "tools.jsonl").read_text().splitlines()
    ]
    # 2 categories x 2 domains x (1 base + 2 evolved)
    assert len(tools) == 12 and summary["tools"]["synthetic"] == 12
    assert {tool.category for tool in tools} == {"smart_home", "financial_trading"}
    assert len({tool.name for tool in tools}) == len(tools)
    assert {tool.provenance["step"] for tool in tools} == {"base", "deepen", "widen"}
    evolved = next(tool for tool in tools if tool.provenance["step"] == "deepen")
    assert evolved.provenance["parent"] in {tool.name for tool in tools}
    assert evolved.parameters["required"] == ["record_id"] and evolved.returns["type"] == "object"
    assert (output / "tool_map.png").read_bytes()[:4] == b"\x89PNG"


def test_tasks_carry_rubrics_and_states(scripted_run):
    output, summary = scripted_run
    tasks = read_records(output / "tasks.jsonl", Task)
    assert len(tasks) == 8 and summary["tasks"]["agents"] == 4
    agents = [json.loads(line) for line in (output / "agents.jsonl").read_text().splitlines()]
    assert len({frozenset(agent["tools"]) for agent in agents}) == len(agents)  # distinct tool sets
    for task in tasks:
        names = [item.name for item in task.rubric]
        assert (
            names[:2] == ["tool_pattern", "well_formed"] and "success_1" in names and "checkpoint_1" in names
        )
        assert task.user is not None and task.user.known_info
        assert set(task.verification["expected_tools"]) <= {tool.function.name for tool in task.tools}
        if task.initial_state:
            assert "final_state" in names and task.verification["expected_final_state"]
    assert {task.metadata["level"] for task in tasks} == {1, 2}
    assert any(task.initial_state for task in tasks)


def test_every_task_is_played_judged_and_kept(scripted_run):
    output, summary = scripted_run
    kept = read_records(output / "trajectories.jsonl", Trajectory)
    assert len(kept) == 8 and summary["trajectories"]["rejected"] == 0
    for trajectory in kept:
        assert trajectory.judge["verdict"] == "keep" and trajectory.reward == 1.0
        assert trajectory.termination == "user_stop"
        calls = trajectory.env_final["calls"]
        assert calls and all(call["executor"] == "simulator" for call in calls)
        authors = {meta.author for meta in trajectory.meta}
        assert {"policy", "tool_sim", "user_sim"} <= authors
    runs = summary["trajectories"]
    assert runs["tool_calls"] == sum(len(t.env_final["calls"]) for t in kept)
    assert sum(runs["simulated_outcomes"].values()) == runs["tool_calls_by_executor"]["simulator"]
    assert runs["turns_mean"] == sum(max(m.turn for m in t.meta) for t in kept) / len(kept)
    assert [summary[stage]["acceptance"] for stage in ("tools", "tasks", "trajectories")] == [1.0] * 3
    assert set(summary["models"]) == {"generator", "agent", "user", "tool_simulator", "judge"}
    assert "<img" in (output / "report.html").read_text()


def without_latency(text: str) -> str:
    return re.sub(r'"latency_s": [0-9.e-]+', '"latency_s": _', text)


def test_same_seed_same_outputs_at_any_concurrency(scripted_run, tmp_path):
    output, _ = scripted_run
    again = tmp_path / "again"
    synthesise(
        small_recipe(again, concurrency=1), progress=False, models=scripted_models(), embed=bag_of_words
    )
    for name in OUTPUTS:  # byte for byte but the measured latencies
        assert without_latency((again / name).read_text()) == without_latency((output / name).read_text()), (
            name
        )


def test_a_rerun_replays_nothing(scripted_run):
    output, _ = scripted_run
    before = {name: (output / name).read_text() for name in OUTPUTS}
    summary = synthesise(small_recipe(output), progress=False, models=scripted_models(), embed=bag_of_words)
    assert {name: (output / name).read_text() for name in OUTPUTS} == before
    assert summary["cache"]["misses"] == 0


def test_a_rerun_with_other_settings_is_refused(scripted_run):
    output, _ = scripted_run
    with pytest.raises(ValueError, match=r"holds a run with other settings \(\[synth\].seed\)"):
        synthesise(small_recipe(output, seed=1), progress=False, models=scripted_models(), embed=bag_of_words)


def test_real_tools_are_executed_by_their_servers(tmp_path):
    """Agents that hold a real tool call the real server (mcp-server-time, the gym's sandbox): their
    results are authored `tool_exec` and recorded with the executor; synthetic tools stay simulated."""
    recipe = small_recipe(
        tmp_path / "run",
        tools={"builtin_servers": ["time", "sandbox"], "evolution_rounds": 0},
        tasks={"agents": 4, "real_tool_share": 1.0, "tasks_per_agent": 1, "levels": [2]},
    )
    summary = synthesise(recipe, progress=False, models=scripted_models(), embed=bag_of_words)
    assert summary["tools"]["real_by_server"] == {"time": 2, "sandbox": 1}
    played = read_records(tmp_path / "run" / "trajectories.jsonl", Trajectory)
    real_calls = [
        call for t in played for call in t.env_final["calls"] if call["executor"] in ("mcp", "sandbox")
    ]
    assert real_calls, summary["trajectories"]
    answers = [
        message.content
        for t in played
        for message, meta in zip(t.messages, t.meta, strict=True)
        if meta.author == "tool_exec"
    ]
    # the scripted agent passes "r1" for every string: the real servers answer as they do to bad input
    assert any("r1" in answer and "timezone" in answer.lower() for answer in answers) or any(
        "NameError" in answer for answer in answers
    )
    assert summary["trajectories"]["tool_calls_by_executor"]["simulator"] > 0
    # the Fig. 9-like map places every tool, real ones labelled by their server
    points = [json.loads(line) for line in (tmp_path / "run" / "tool_map.json").read_text().splitlines()]
    assert len(points) == summary["tools"]["real"] + summary["tools"]["synthetic"]
    assert {p["category"] for p in points if p["origin"] != "synthetic"} == {"time", "sandbox"}
    assert {p["category"] for p in points if p["origin"] == "synthetic"} == {
        "smart_home",
        "financial_trading",
    }
