"""The tool environment on tau2's real airline and retail MCP servers (stdio, the `mcp` SDK), no mocks.

The agent and the user are scripted stand-ins (tests/gym/scripted.py): an agent that performs a task's
reference actions one call per turn and then states the facts it must communicate, and a user that ends
the dialogue once the agent is done. The tests are about the environment, the servers and the scoring.
"""

import asyncio
import json

import pytest

from openk2.chat import Message, format_call_id
from openk2.gym import make, rollout
from openk2.llm import SamplingParams
from tests.gym.scripted import ScriptedLLM

WRITES = {
    "book_reservation",
    "cancel_reservation",
    "send_certificate",
    "update_reservation_baggages",
    "update_reservation_flights",
    "update_reservation_passengers",
}
USER = ScriptedLLM(
    lambda request: (
        "Thank you, goodbye. ###STOP###" if "All done" in request.messages[-1].text else "I need help."
    ),
    "scripted-user",
)


def reference_agent(task, skip_write: bool = False) -> ScriptedLLM:
    actions = list(task.verification["actions"])
    if skip_write:
        actions.pop(next(index for index, action in enumerate(actions) if action["name"] in WRITES))

    def script(request):
        made = sum(len(message.tool_calls or []) for message in request.messages)
        if made < len(actions):
            action = actions[made]
            call = {
                "id": format_call_id(action["name"], made),
                "type": "function",
                "function": {"name": action["name"], "arguments": json.dumps(action["arguments"])},
            }
            return Message(role="assistant", content=None, tool_calls=[call])
        return "All done. " + " ".join(task.verification["communicate_info"])

    return ScriptedLLM(script, "scripted-agent")


@pytest.fixture(scope="module")
def airline():
    env = make("tool", domain="airline", user_llm=USER)
    tasks = env.tasks("train") + env.tasks("test")
    yield env, tasks
    asyncio.run(env.aclose())


def run(env, task, agent):
    return asyncio.run(rollout(env, task, agent, SamplingParams()))


def reference_rewards(env, tasks):
    return {task.id: run(env, task, reference_agent(task)) for task in tasks}


def test_airline_tasks_splits_and_tools(airline):
    _, tasks = airline
    assert len(tasks) == 50
    assert {task.split for task in tasks} == {"train", "test"}
    tools = {tool.function.name for tool in tasks[0].tools}
    assert "cancel_reservation" in tools and "reset_state" not in tools
    assert all("state_key" not in tool.function.parameters["properties"] for tool in tasks[0].tools)


def test_reference_actions_score_1_on_a_few_airline_tasks(airline):
    env, tasks = airline
    chosen = [task for task in tasks if any(a["name"] in WRITES for a in task.verification["actions"])][:2]
    for task_id, trajectory in reference_rewards(env, chosen).items():
        assert trajectory.reward == 1.0, (task_id, trajectory.rewards)
        assert trajectory.termination == "user_stop"
        assert trajectory.env_final["db_hash"]


@pytest.mark.long
def test_reference_actions_score_1_on_at_least_20_airline_tasks(airline):
    env, tasks = airline
    results = reference_rewards(env, tasks[:24])
    assert sum(trajectory.reward == 1.0 for trajectory in results.values()) >= 20
    assert all(trajectory.reward == 1.0 for trajectory in results.values()), {
        task_id: t.rewards for task_id, t in results.items() if t.reward != 1.0
    }


def test_skipping_one_write_scores_0(airline):
    env, tasks = airline
    task = next(task for task in tasks if any(a["name"] in WRITES for a in task.verification["actions"]))
    trajectory = run(env, task, reference_agent(task, skip_write=True))
    assert trajectory.reward == 0.0
    db = next(component for component in trajectory.rewards if component.name == "db")
    assert db.score == 0.0 and db.details["hash"] != db.details["expected"]


def test_an_untold_required_fact_scores_0_and_scoring_replays_stored_conversations(airline):
    env, tasks = airline
    task = next(task for task in tasks if task.verification["communicate_info"])
    trajectory = run(env, task, reference_agent(task))
    assert trajectory.reward == 1.0
    silent = [
        m if m.role != "assistant" or m.tool_calls else Message(role="assistant", content="All done.")
        for m in trajectory.messages
    ]
    reward = asyncio.run(env.score(task, silent))  # a fresh replay of the calls, not the episode's state
    assert reward.value == 0.0
    assert [c.name for c in reward.components if c.score == 0.0] == ["communicate"]


def test_bad_tool_calls_come_back_as_tool_errors(airline):
    env, tasks = airline
    task = tasks[0]

    def script(request):
        if len(request.messages) < 4:
            call = {
                "id": "functions.cancel_reservation:0",
                "type": "function",
                "function": {"name": "cancel_reservation", "arguments": '{"reservation_id": "NOPE00"}'},
            }
            return Message(role="assistant", content=None, tool_calls=[call])
        return "All done."

    trajectory = run(env, task, ScriptedLLM(script))
    tool_messages = [
        (m, meta) for m, meta in zip(trajectory.messages, trajectory.meta, strict=True) if m.role == "tool"
    ]
    assert tool_messages and tool_messages[0][1].error == "Error: Reservation NOPE00 not found"


def test_retail_nl_assertions_need_a_judge():
    env = make("tool", domain="retail", user_llm=USER)
    try:
        tasks = env.tasks("train") + env.tasks("test")
        assert len(tasks) == 114
        task = next(task for task in tasks if task.verification["nl_assertions"])
        reward = asyncio.run(env.score(task, task.messages))
        assert reward.value is None and "need a judge" in reward.error
    finally:
        asyncio.run(env.aclose())


def test_an_episode_needs_a_user_simulator():
    env = make("tool", domain="airline")
    try:
        [task] = env.tasks("test", n=1)
        with pytest.raises(ValueError, match="user_llm"):
            asyncio.run(rollout(env, task, USER, SamplingParams()))
    finally:
        asyncio.run(env.aclose())
