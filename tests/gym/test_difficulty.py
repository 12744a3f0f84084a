"""The difficulty filter keeps tasks that a model solves sometimes, not always or never, and resumes."""

import asyncio
import json

from openk2.gym import Task, make, read_records
from openk2.gym.difficulty import FilterSettings, filter_by_difficulty, pass_at
from openk2.llm import SamplingParams
from tests.gym.scripted import ScriptedLLM


def test_pass_at_k_matches_the_closed_form():
    assert pass_at(8, 0, 1) == 0.0 and pass_at(8, 8, 1) == 1.0
    assert pass_at(8, 2, 1) == 2 / 8
    assert abs(pass_at(5, 2, 2) - (1 - (3 * 2) / (5 * 4))) < 1e-12


def test_moderate_tasks_are_kept_and_a_rerun_resumes(tmp_path):
    """A scripted stand-in model: always right on the first task, never on the second, on half the
    samples (by seed) of the rest."""
    env = make("logic", sources=["digit_reversal"], difficulty=1, verifier_workers=0)
    tasks = env.tasks("train", n=4, seed=0)
    answers = {task.messages[0].text: task.verification["answer"] for task in tasks}
    easy, hard = tasks[0].messages[0].text, tasks[1].messages[0].text

    def script(request):
        question = request.messages[-1].text
        right = question == easy or (question != hard and request.sampling.seed % 2 == 0)
        return f"Answer: {answers[question] if right else 'wrong'}"

    model = ScriptedLLM(script)
    output = tmp_path / "moderate.jsonl"
    settings = FilterSettings(samples=4)
    summary = asyncio.run(filter_by_difficulty(env, tasks, model, SamplingParams(seed=0), output, settings))
    kept = read_records(output, Task)
    assert (summary.measured, summary.kept, summary.with_errors) == (4, 2, 0)
    assert [task.id for task in kept] == [task.id for task in tasks[2:]]
    assert kept[0].metadata["difficulty_filter"]["passes"] == 2
    assert kept[0].metadata["difficulty_filter"]["pass@1"] == 0.5
    progress = [
        json.loads(line)
        for line in output.with_name("moderate.jsonl.progress.jsonl").read_text().splitlines()
    ]
    assert sorted(record["passes"] for record in progress) == [0, 2, 2, 4]

    calls = len(model.requests)
    asyncio.run(filter_by_difficulty(env, tasks, model, SamplingParams(seed=0), output, settings))
    assert len(model.requests) == calls  # every task was measured already: nothing is asked again
    more = env.tasks("train", n=5, seed=0)
    answers.update({task.messages[0].text: task.verification["answer"] for task in more})
    asyncio.run(filter_by_difficulty(env, more, model, SamplingParams(seed=0), output, settings))
    assert len(model.requests) == calls + 4  # only the new task's four samples
