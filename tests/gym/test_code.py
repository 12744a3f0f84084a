"""The code environment: HumanEval's tests run in the real sandbox."""

import asyncio

import pytest

from openk2.chat import Message
from openk2.gym import make
from openk2.gym import sandbox as sandbox_module
from openk2.gym.envs.code import human_eval_problems


@pytest.fixture(scope="module")
def code_env():
    env = make("code", max_concurrency=4)
    yield env
    asyncio.run(env.aclose())


def replies(env, tasks, texts):
    async def all_scores():
        return await asyncio.gather(
            *(
                env.score(task, [*task.messages, Message(role="assistant", content=text)])
                for task, text in zip(tasks, texts, strict=True)
            )
        )

    return asyncio.run(all_scores())


def test_all_164_canonical_solutions_pass_in_the_sandbox(code_env):
    tasks = [code_env.task_of(problem) for problem in human_eval_problems()]
    assert len(tasks) == 164
    rewards = replies(code_env, tasks, [task.verification["answer"] for task in tasks])
    failed = [task.id for task, reward in zip(tasks, rewards, strict=True) if reward.value != 1.0]
    assert failed == []


def test_wrong_0_malformed_0_with_reason_and_a_body_continuation_passes(code_env):
    [task] = code_env.tasks("test", n=1, seed=0)
    problem = next(p for p in human_eval_problems() if f"code/{p['task_id'].replace('/', '-')}" == task.id)
    body_only = f"```python\n{problem['canonical_solution']}```"
    wrong = f"```python\ndef {problem['entry_point']}(*args, **kwargs):\n    return None\n```"
    broken = "```python\ndef oops(:\n```"
    body, bad, syntax, empty = replies(code_env, [task] * 4, [body_only, wrong, broken, ""])
    assert body.value == 1.0
    assert bad.value == 0.0 and bad.components[0].details["exit_code"] == 1
    assert syntax.value == 0.0 and "SyntaxError" in syntax.components[0].details["parse_error"]
    assert empty.value == 0.0 and empty.components[0].details["parse_error"] == "no code in the reply"


def test_a_solution_that_hangs_is_stopped_and_scored_0():
    env = make("code", timeout_s=1.0)
    [task] = env.tasks("test", n=1, seed=0)
    entry = task.verification["entry_point"]
    [reward] = replies(env, [task], [f"```python\ndef {entry}(*args):\n    while True:\n        pass\n```"])
    assert reward.value == 0.0 and reward.components[0].details["stopped_by"] == "timeout"


def test_a_sandbox_that_cannot_start_is_an_error_component_not_a_failed_test(monkeypatch, tmp_path):
    failing = tmp_path / "bwrap"
    failing.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(sandbox_module, "bwrap_path", lambda: str(failing))
    env = make("code")
    [task] = env.tasks("test", n=1, seed=0)
    [reward] = replies(env, [task], [task.verification["answer"]])
    assert reward.value is None and "Permission denied" in reward.error
