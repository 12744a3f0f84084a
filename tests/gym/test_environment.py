"""The environment interface: names, settings, deterministic disjoint splits, missing dependencies."""

import asyncio
import sys

import pytest

from openk2.gym import ENVIRONMENTS, MissingDependency, make

SMALL = {
    "math": {"verifier_workers": 0},
    "logic": {
        "verifier_workers": 0,
        "difficulty": 1,
        "sources": ["morse", "tabular", "digit_reversal", "sorting"],
    },
    "instruction": {"verifier_workers": 0},
    "code": {},
    "tool": {},
    "safety": {},
    "faithfulness": {},
}


def test_an_unknown_environment_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown; known environments: math, logic, instruction, code, tool"):
        make("poetry")


def test_a_bad_setting_names_the_setting():
    with pytest.raises(ValueError, match=r"^math: difficulty: Input should be less than or equal to 5"):
        make("math", difficulty=9)
    with pytest.raises(ValueError, match=r"^logic: colour: Extra inputs are not permitted"):
        make("logic", colour="red")
    with pytest.raises(ValueError, match=r"sources: unknown \['chess'\]; known sources: puzzle24"):
        make("logic", sources=["chess"])


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_splits_are_deterministic_and_never_share_a_task(name):
    env = make(name, **SMALL[name])
    try:
        train, again = env.tasks("train", n=8, seed=1), env.tasks("train", n=8, seed=1)
        test = env.tasks("test", n=8, seed=1)
    finally:
        asyncio.run(env.aclose())
    assert train == again and train and test
    assert {task.split for task in train} == {"train"} and {task.split for task in test} == {"test"}
    assert not {task.id for task in train} & {task.id for task in test}
    content = lambda tasks: {task.model_dump_json(exclude={"id", "split", "metadata"}) for task in tasks}  # noqa: E731
    assert not content(train) & content(test)
    assert all(task.env == name for task in train + test)


def test_a_tiny_task_space_that_cannot_fill_n_says_so():
    env = make("logic", sources=["digit_reversal"], difficulty=1, verifier_workers=0)
    with pytest.raises(
        ValueError, match=r"^n: only \d+ distinct test tasks exist at this difficulty, asked for 5000"
    ):
        env.tasks("test", n=5000, seed=0)


def test_a_missing_optional_dependency_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    from openk2.gym.envs import problems

    problems._reasoning_gym.cache_clear()
    try:
        with pytest.raises(
            MissingDependency,
            match=r"reasoning_gym: not installed; run `pip install reasoning-gym==0\.1\.25`",
        ):
            make("math", sources=["arithmetic"], verifier_workers=0).tasks("train", n=1)
    finally:
        problems._reasoning_gym.cache_clear()
