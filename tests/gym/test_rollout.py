"""Rollouts through the LLM interface keep exactly the tokens the policy read and sampled.

The policies here are real OpenK2 engines on scripted checkpoints (tests/llm/checkpoints.py): the test is
about the rollout's bookkeeping, so their fixed replies are what we want.
"""

import asyncio
from collections.abc import Sequence

import pytest
import torch

from openk2.chat import Message
from openk2.gym import (
    Environment,
    Episode,
    MessageMeta,
    Reward,
    RewardComponent,
    Task,
    Turn,
    rollout,
    rollouts,
)
from openk2.gym.environment import EnvSettings
from openk2.llm import LLM, ChatRequest, Completion, SamplingParams
from openk2.llm.k2_engine import K2Engine
from tests.gym.scripted import ScriptedLLM
from tests.llm.checkpoints import CALLS_THE_TOOL, WEATHER_TOOL, write_scripted_checkpoint


class Recording(LLM):
    """Passes requests to an engine and keeps every completion (what the model was fed and sampled)."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.completions: list[Completion] = []

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        completions = self.inner.chat_batch(requests)
        self.completions += completions
        return completions

    def continuation_ids(self, history, new_messages, tools=None):
        return self.inner.continuation_ids(history, new_messages, tools)


class TwoTurnEnv(Environment):
    """Answers the first reply with a user turn (or tool calls with their results), then ends."""

    name = "two-turn"
    kind = "open_ended"
    summary = "test"
    sources = ()
    Settings = EnvSettings

    def tasks(self, split, n=None, seed=0):
        return []

    async def start(self, task: Task) -> Episode:
        return TwoTurnEpisode()

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        return Reward.combine([RewardComponent(name="replies", score=1.0)])


class TwoTurnEpisode(Episode):
    def __init__(self) -> None:
        self.turns = 0

    async def respond(self, messages: Sequence[Message]) -> Turn:
        self.turns += 1
        if self.turns > 1:
            return Turn.end("user_stop")
        last = messages[-1]
        if last.tool_calls:
            results = [
                Message(role="tool", tool_call_id=call.id, content=f"18C ({index})")
                for index, call in enumerate(last.tool_calls)
            ]
            return Turn(results, [MessageMeta(author="tool_exec") for _ in results])
        return Turn([Message(role="user", content="And tomorrow?")], [MessageMeta(author="user_sim")])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def answering_engine(tmp_path_factory) -> K2Engine:
    return K2Engine.from_checkpoint(write_scripted_checkpoint(tmp_path_factory.mktemp("answers")))


@pytest.fixture(scope="module")
def calling_engine(tmp_path_factory) -> K2Engine:
    return K2Engine.from_checkpoint(
        write_scripted_checkpoint(tmp_path_factory.mktemp("calls"), CALLS_THE_TOOL)
    )


def assert_spans_are_what_the_policy_read_and_sampled(trajectory, recording: Recording):
    policy = [index for index, meta in enumerate(trajectory.meta) if meta.author == "policy"]
    assert len(policy) == len(recording.completions) == 2
    for index, completion in zip(policy, recording.completions, strict=True):
        before = [token for meta in trajectory.meta[:index] for token in meta.tokens.token_ids]
        assert before == completion.tokens.prompt_token_ids  # exactly the sequence the model was fed
        span = trajectory.meta[index].tokens
        assert span.token_ids == completion.tokens.token_ids and span.logprobs == completion.tokens.logprobs
        assert any(span.sampled)
    ids, mask, _ = trajectory.token_sequence()
    assert sum(mask) == sum(sum(trajectory.meta[index].tokens.sampled) for index in policy)
    assert (
        ids == recording.completions[-1].tokens.prompt_token_ids + recording.completions[-1].tokens.token_ids
    )
    for meta in trajectory.meta:
        if meta.author != "policy":
            assert meta.tokens.token_ids and not any(meta.tokens.sampled)


def test_a_token_level_rollout_with_a_user_turn_keeps_the_sampled_tokens(answering_engine):
    recording = Recording(answering_engine)
    task = Task(
        id="weather",
        env="two-turn",
        kind="open_ended",
        messages=[
            {"role": "system", "content": "You are Kimi."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
    )
    sampling = SamplingParams(temperature=1.0, return_tokens=True, seed=0)
    trajectory = asyncio.run(rollout(TwoTurnEnv(), task, recording, sampling, policy_version=7))
    assert [m.role for m in trajectory.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert trajectory.termination == "user_stop" and trajectory.reward == 1.0
    assert_spans_are_what_the_policy_read_and_sampled(trajectory, recording)
    system_span = answering_engine.decode(trajectory.meta[0].tokens.token_ids)
    assert "You are Kimi." in system_span and "Paris" not in system_span  # the prompt is split per message
    assert trajectory.meta[2].tokens.policy_version == 7


def test_a_token_level_rollout_with_tool_results_keeps_the_sampled_tokens(calling_engine):
    recording = Recording(calling_engine)
    task = Task(
        id="weather-tool",
        env="two-turn",
        kind="tool_use",
        messages=[{"role": "user", "content": "What is the weather in Paris? Use the tool."}],
        tools=[WEATHER_TOOL],
    )
    trajectory = asyncio.run(
        rollout(TwoTurnEnv(), task, recording, SamplingParams(temperature=0.0, return_tokens=True))
    )
    assert [m.role for m in trajectory.messages] == ["user", "assistant", "tool", "assistant"]
    assert trajectory.messages[1].tool_calls[0].function.name == "get_weather"
    assert_spans_are_what_the_policy_read_and_sampled(trajectory, recording)


def test_an_endpoint_style_rollout_is_message_level():
    """A scripted stand-in policy (no tokens): the trajectory has messages and no spans."""
    task = Task(id="plain", env="two-turn", kind="open_ended", messages=[{"role": "user", "content": "Hi"}])
    trajectory = asyncio.run(rollout(TwoTurnEnv(), task, ScriptedLLM(lambda r: "Hello"), SamplingParams()))
    assert [m.text for m in trajectory.messages] == ["Hi", "Hello", "And tomorrow?", "Hello"]
    assert all(meta.tokens is None for meta in trajectory.meta)
    with pytest.raises(ValueError, match="did not keep its token spans"):
        trajectory.token_sequence()


def test_a_model_failure_ends_the_episode_as_infra_error_and_keeps_it():
    def unavailable(request):
        from openk2.llm import ModelUnavailable

        raise ModelUnavailable("connection refused")

    task = Task(id="plain", env="two-turn", kind="open_ended", messages=[{"role": "user", "content": "Hi"}])
    trajectory = asyncio.run(rollout(TwoTurnEnv(), task, ScriptedLLM(unavailable), SamplingParams()))
    assert (trajectory.status, trajectory.termination) == ("failed", "infra_error")
    assert "connection refused" in trajectory.error and trajectory.reward is None


def test_a_reply_over_the_task_budget_is_truncated():
    class Long(ScriptedLLM):
        def chat_batch(self, requests):
            [completion] = super().chat_batch(requests)
            self.max_tokens = requests[0].sampling.max_tokens
            return [completion.model_copy(update={"finish_reason": "length"})]

    policy = Long(lambda r: "very long")
    task = Task(
        id="b", env="two-turn", kind="open_ended", messages=[{"role": "user", "content": "Hi"}], budget=16
    )
    trajectory = asyncio.run(rollout(TwoTurnEnv(), task, policy, SamplingParams(max_tokens=1000)))
    assert (trajectory.status, trajectory.termination) == ("truncated", "budget_exceeded")
    assert policy.max_tokens == 16 and trajectory.sampling.max_tokens == 16


def test_rollouts_run_concurrently_within_the_bound_and_group_samples():
    """A scripted stand-in policy that records how many calls overlap."""
    in_flight, peak = 0, 0

    class Slow(ScriptedLLM):
        async def achat(self, request):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            return self.chat_batch([request])[0]

    tasks = [
        Task(id=f"t{i}", env="two-turn", kind="open_ended", messages=[{"role": "user", "content": "Hi"}])
        for i in range(6)
    ]
    trajectories = asyncio.run(
        rollouts(
            TwoTurnEnv(),
            tasks,
            Slow(lambda r: "ok"),
            SamplingParams(seed=10),
            samples_per_task=2,
            max_concurrency=3,
        )
    )
    assert 1 < peak <= 3
    assert len(trajectories) == 12
    assert [t.group_id for t in trajectories[:2]] == ["t0", "t0"]
    assert [t.sampling.seed for t in trajectories[:2]] == [10, 11]
