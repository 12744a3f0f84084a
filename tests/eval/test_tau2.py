"""tau2 through the eval suite: trials of each task on the real airline MCP server, pass^k over trials.

Agent and user are scripted stand-ins (the test is about the suite, not a model): the user states its
goal and stops once the agent is done; the agent performs the task's reference actions on even trials
and nothing on odd ones, so a task with writes passes exactly 2 of its 4 trials.
"""

import asyncio
import math

from openk2.chat import Message
from openk2.eval import SUITES, EvalProfile
from openk2.llm import ChatRequest
from tests.eval.conftest import run_suites
from tests.gym.scripted import ScriptedLLM
from tests.gym.test_tool import WRITES, reference_agent


def scripted_user() -> ScriptedLLM:
    def script(request: ChatRequest) -> str:
        goal = request.messages[0].text.split("Your goal: ", 1)[1].split("\n", 1)[0]
        if "All done" in request.messages[-1].text:
            return "Thank you. ###STOP###"
        return f"Hello. {goal}"

    return ScriptedLLM(script, "scripted-user")


def alternating_agent(tasks) -> ScriptedLLM:
    """The gym tests' reference agent on even trials of each task; on odd trials it only says it is done."""
    by_goal = {task.user.goal: task for task in tasks}
    trials: dict[str, int] = {}

    def script(request: ChatRequest) -> Message | str:
        opening = next(m.text for m in request.messages if m.role == "user")
        task = next(task for goal, task in by_goal.items() if goal in opening)
        if sum(m.role == "assistant" for m in request.messages) == 1:  # only the greeting: a new trial
            trials[task.id] = trials.get(task.id, -1) + 1
        if trials[task.id] % 2 == 0:
            return reference_agent(task).script(request)
        return "All done. " + " ".join(task.verification["communicate_info"])

    return ScriptedLLM(script, "alternating-agent")


def test_tau2_trials_give_pass_hat_k_over_tasks(tmp_path):
    suite = SUITES["tau2-airline"]
    settings = suite.settings(EvalProfile(), {"n": 3})
    env = suite.make_env(settings, scripted_user())
    tasks = suite.tasks(env, settings)
    asyncio.run(env.aclose())

    results = run_suites(
        tmp_path, alternating_agent(tasks), "tau2-airline", {"n": 3}, concurrency=1,
        helper=scripted_user(), helper_spec="scripted-user",
    )  # fmt: skip
    [result] = results.suites
    assert result.settings.samples == 4 and result.settings.temperature == 0.0  # K2: 4 trials, temperature 0
    assert result.scored == result.items == 12 and results.helper.name == "scripted-user"

    def passes_without_acting(task) -> bool:
        writes = any(action["name"] in WRITES for action in task.verification["actions"])
        return not writes and not task.verification["communicate_info"]

    passes = [4 if passes_without_acting(task) else 2 for task in tasks]
    assert 2 in passes  # at least one task is solved in only some trials
    observed = [sum(t.reward == 1.0 for t in result.trajectories if t.task_id == task.id) for task in tasks]
    assert observed == passes
    for k, score in enumerate(result.scores, start=1):
        assert score.metric == f"pass^{k}"
        assert score.value == sum(math.comb(c, k) / math.comb(4, k) for c in passes) / len(passes)
    assert result.scores[0].value > result.scores[-1].value  # reliability falls with k
