"""What one RL iteration records: a `StepRecord` (the optimizer's side, shared with every stage) plus the
rollouts, rewards, critic and weight sync. One line per iteration in `<run_dir>/metrics.jsonl`."""

from __future__ import annotations

from pydantic import Field

from openk2.train.metrics import StepRecord


class IterationRecord(StepRecord):
    """`step` is the iteration; `loss` the total of the last update; `grad_norm` the mean over updates."""

    temperature: float
    policy_version: int  # the weights that sampled this iteration's new tokens (iterations trained before)
    updates: int  # optimizer steps this iteration (0 when no group was complete)
    groups_trained: int
    groups_without_signal: int  # complete groups whose rewards were all equal: no advantage, not trained
    samples_trained: int
    samples_excluded: int  # their reward errored: logged, left out of the group mean and the loss
    reward_mean: float | None
    reward_per_env: dict[str, float] = Field(default_factory=dict)
    reply_tokens_mean: float | None  # sampled tokens per trained reply
    truncation_rate: float | None  # share of trained replies cut at their budget
    paused_episodes: int  # partial rollouts carried into the next iteration
    stale_token_fraction: float  # trained tokens sampled by weights older than this iteration's
    policy_loss: float
    ptx_loss: float | None = None
    critic_loss: float | None = None
    kl_to_old: float | None  # mean per sampled token of KL(π_old ‖ π_θ) after the updates (k3 estimate)
    logprob_mismatch: float | None  # mean |log π_θ − log π_old| per token before the first update
    critic_agreement: float | None  # mean score of the verified-better reply (closed-loop pairs)
    critic_pairs: int
    weight_sync_seconds: float
    rollout_seconds: float
    train_seconds: float
    generated_tokens: int
    rollout_tokens_per_second: float
    reused_groups: int  # complete groups read back from rollouts.jsonl after a restart
    token_exact: bool  # trained on the sampled token ids (False: re-tokenised endpoint messages)
    eval_reward: dict[str, float] | None = None  # greedy reward on held-out tasks, per environment
    trained_groups: list[str] = Field(default_factory=list)


def describe_iteration(record: StepRecord) -> str:
    assert isinstance(record, IterationRecord)
    reward = "-" if record.reward_mean is None else f"{record.reward_mean:.3f}"
    length = "-" if record.reply_tokens_mean is None else f"{record.reply_tokens_mean:.1f}"
    truncated = "-" if record.truncation_rate is None else f"{record.truncation_rate:.2f}"
    evaluated = ""
    if record.eval_reward:
        evaluated = " | held-out " + ", ".join(
            f"{env} {value:.2f}" for env, value in record.eval_reward.items()
        )
    return (
        f"reward {reward} | len {length} | trunc {truncated} | T {record.temperature:.2f} | "
        f"{record.groups_trained} groups | sync {record.weight_sync_seconds:.3f}s | "
        f"{record.rollout_tokens_per_second:,.0f} gen tok/s{evaluated}"
    )
