"""The Verifiable Rewards Gym (K2 report §3.2.1): tasks, environments whose rewards are checked by code, a
sandbox, and the rollout driver; and the task/trajectory records that synthesis, SFT, RL and evaluation share.
"""

from openk2.gym.records import (
    MessageMeta,
    Reward,
    RewardComponent,
    RubricItem,
    Task,
    TokenSpan,
    Trajectory,
    UserScenario,
    append_record,
    iter_records,
    read_records,
)

__all__ = [
    "MessageMeta",
    "Reward",
    "RewardComponent",
    "RubricItem",
    "Task",
    "TokenSpan",
    "Trajectory",
    "UserScenario",
    "append_record",
    "iter_records",
    "read_records",
]
