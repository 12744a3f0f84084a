"""A verifier that hangs, raises or crashes yields a component with an error, and the episode is kept."""

import asyncio
import os
import time
from collections.abc import Sequence

from openk2.chat import Message
from openk2.gym import Environment, Reward, Task, rollout
from openk2.gym.environment import EnvSettings
from openk2.gym.verifiers import Verdict, VerifierPool
from openk2.llm import SamplingParams
from tests.gym.scripted import fixed


def hangs(reply: str) -> Verdict:
    time.sleep(60)
    return Verdict(1.0)


def raises(reply: str) -> Verdict:
    raise ZeroDivisionError("the checker divided by zero")


def crashes(reply: str) -> Verdict:
    os._exit(3)


def passes(reply: str) -> Verdict:
    return Verdict(1.0 if reply == "ok" else 0.0, {"reply": reply})


def test_hang_raise_and_crash_become_errors_and_the_pool_keeps_working():
    pool = VerifierPool(workers=2, timeout_s=2.0)

    async def run():
        return await asyncio.gather(
            pool.check("hang", hangs, "x"),
            pool.check("raise", raises, "x"),
            pool.check("crash", crashes, "x"),
            pool.check("fine", passes, "ok"),
        )

    try:
        hang, error, crash, fine = asyncio.run(run())
        assert hang.score is None and hang.error == "timed out after 2 s"
        assert error.error == "ZeroDivisionError: the checker divided by zero"
        assert crash.error == "the verifier process died"
        assert fine.score == 1.0 and fine.passed
        again = asyncio.run(pool.check("after", passes, "ok"))  # replaced workers serve the next check
        assert again.score == 1.0
    finally:
        pool.close()


class HangingVerifierEnv(Environment):
    """A single-turn environment whose verifier never returns (its checker sleeps)."""

    name = "hanging"
    kind = "math"
    summary = "test"
    sources = ()
    Settings = EnvSettings

    def __init__(self) -> None:
        super().__init__()
        self.pool = VerifierPool(workers=1, timeout_s=1.0)

    def tasks(self, split, n=None, seed=0):
        return [
            Task(id="hanging/0", env=self.name, kind="math", messages=[{"role": "user", "content": "2+2?"}])
        ]

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        return Reward.combine([await self.pool.check("answer", hangs, messages[-1].text)])

    async def aclose(self):
        self.pool.close()


def test_an_episode_whose_verifier_hangs_is_kept_with_an_error_component():
    """The policy is a scripted stand-in; the test is about the episode record."""
    env = HangingVerifierEnv()
    [task] = env.tasks("train")
    try:
        trajectory = asyncio.run(rollout(env, task, fixed("4"), SamplingParams()))
    finally:
        asyncio.run(env.aclose())
    assert trajectory.status == "completed" and trajectory.termination == "agent_stop"
    assert [message.text for message in trajectory.messages] == ["2+2?", "4"]
    assert trajectory.reward is None
    assert trajectory.rewards[0].error == "timed out after 1 s"
