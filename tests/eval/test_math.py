"""The math suites end to end (MMATH tasks, the gym's Math-Verify check, the scores): reference answers
score 100%, and AIME's Avg@k is each task's share of right samples averaged over tasks.

The models are scripted stand-ins that answer from the tasks' own reference answers (pipeline tests).
"""

from openk2.eval import SUITES, EvalProfile
from openk2.llm import ChatRequest
from tests.eval.conftest import run_suites
from tests.gym.scripted import ScriptedLLM


def suite_tasks(name: str, overrides: dict | None = None) -> list:
    suite = SUITES[name]
    settings = suite.settings(EvalProfile(), overrides)
    return suite.tasks(suite.make_env(settings, None), settings)


def answering(tasks: list, right_calls: dict[str, int], name: str) -> ScriptedLLM:
    """Replies `\\boxed{reference}` to the first `right_calls[prompt]` requests of each prompt, then a
    wrong number: which samples are right does not matter to Avg@k, only how many."""
    answers = {task.messages[-1].text: task.verification["answer"] for task in tasks}
    calls: dict[str, int] = {}

    def script(request: ChatRequest) -> str:
        prompt = request.messages[-1].text
        calls[prompt] = calls.get(prompt, 0) + 1
        answer = answers[prompt] if calls[prompt] <= right_calls[prompt] else "-1"
        return f"The answer is $\\boxed{{{answer}}}$."

    return ScriptedLLM(script, name)


def test_math500_reference_answers_score_100_percent(tmp_path):
    tasks = suite_tasks("math500")
    oracle = answering(tasks, {task.messages[-1].text: 1 for task in tasks}, "math-oracle")
    [suite] = run_suites(tmp_path, oracle, "math500").suites
    assert suite.tasks == suite.scored == 65  # MMATH's MATH500 problems in the held-out split
    scores = {score.metric: score.value for score in suite.scores}
    assert scores == {"acc": 1.0, "parsed": 1.0, "answer_marked": 1.0}
    assert suite.headline.interval.method == "wilson"


def test_aime_avg_at_k_averages_each_tasks_share_of_right_samples(tmp_path):
    tasks = suite_tasks("aime2024", {"split": "all"})
    right = {task.messages[-1].text: index % 5 for index, task in enumerate(tasks)}  # 0..4 of 4 samples
    model = answering(tasks, right, "sometimes-right")
    results = run_suites(
        tmp_path, model, "aime2024", {"samples": 4}, profile=EvalProfile(split="all"), concurrency=4
    )
    [suite] = results.suites
    assert suite.settings.temperature == 0.6  # K2's sampled setting for Avg@k, not greedy
    assert suite.tasks == 30 and suite.scored == 120 and suite.metric == "Avg@4"
    expected = sum(min(count, 4) / 4 for count in right.values()) / len(right)
    assert suite.headline.metric == "avg@4" and abs(suite.headline.value - expected) < 1e-12
    assert suite.headline.interval.method == "bootstrap"  # over tasks, not over samples
    assert suite.headline.interval.low < expected < suite.headline.interval.high
