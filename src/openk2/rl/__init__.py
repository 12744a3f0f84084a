"""Reinforcement learning (K2 report §3.2–3.3): the K1.5 objective (and GRPO as a baseline), rollouts through
the gym with kept tokens, verifiable and self-critique rubric rewards, budget control, PTX, temperature decay,
partial rollouts, colocated or endpoint sampling with timed weight sync.

    openk2 rl --recipe recipes/rl-tiny.toml [--resume]

Nothing heavy is imported here; `openk2.rl.trainer.rl` runs a recipe, `openk2.rl.losses` holds the objectives.
"""
