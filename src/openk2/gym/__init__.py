"""The Verifiable Rewards Gym (K2 report §3.2.1): tasks, environments whose rewards are checked by code, a
sandbox, and the rollout driver; and the task/trajectory records that synthesis, SFT, RL and evaluation share.

    env = openk2.gym.make("math", difficulty=1)
    tasks = env.tasks("train", n=8, seed=0)
    trajectory = await openk2.gym.rollout(env, tasks[0], llm, SamplingParams(return_tokens=True))
"""

from openk2.gym.environment import (
    ENVIRONMENTS,
    Environment,
    Episode,
    MissingDependency,
    Source,
    Turn,
    environment_class,
    make,
)
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
from openk2.gym.rollout import rollout, rollouts

__all__ = [
    "ENVIRONMENTS",
    "Environment",
    "Episode",
    "MessageMeta",
    "MissingDependency",
    "Reward",
    "RewardComponent",
    "RubricItem",
    "Source",
    "Task",
    "TokenSpan",
    "Trajectory",
    "Turn",
    "UserScenario",
    "append_record",
    "environment_class",
    "iter_records",
    "make",
    "read_records",
    "rollout",
    "rollouts",
]
