"""Instruction prompts composed AutoIF-style (K2 report §3.2.1, multi-source instruction generation):
a base request plus verifiable constraints drawn with their parameters from a seeded generator, and,
when a judge is configured, one soft constraint that only a judge can check."""

from __future__ import annotations

import random
from typing import Any

from openk2.gym.envs.instruction.constraints import KINDS

BASE_REQUESTS = [
    "Write a short note to a neighbour about a parcel that was delivered to you by mistake.",
    "Describe how to make a cup of tea.",
    "Explain why the sky looks blue during the day.",
    "Write a product description for a reusable water bottle.",
    "Give advice to someone starting to learn the guitar.",
    "Summarise the plot of a story about a lighthouse keeper who finds a message in a bottle.",
    "Write a short speech thanking volunteers at a community garden.",
    "Explain the difference between weather and climate.",
    "Write an invitation to a small birthday picnic in the park.",
    "Describe a walk through a city market in the early morning.",
    "Explain how a bicycle's gears make climbing hills easier.",
    "Write a cover letter opening for a job at a public library.",
    "Give tips for keeping houseplants alive in winter.",
    "Describe the life cycle of a butterfly.",
    "Write a short review of an imaginary board game about trains.",
    "Explain what a budget is and why it helps.",
    "Write a message to a friend recommending a book you enjoyed.",
    "Describe the rules of a simple card game for children.",
    "Explain how recycling paper saves resources.",
    "Write a weather report for a stormy autumn day.",
    "Give instructions for planting a tomato seedling.",
    "Describe your ideal weekend in the mountains.",
    "Explain how to prepare for a job interview.",
    "Write a short story opening set on a night train.",
]
SOFT_CONSTRAINTS = [
    "Use a warm, encouraging tone throughout.",
    "Write for a ten-year-old reader: simple words, no jargon.",
    "Keep a formal, professional tone throughout.",
    "Include one concrete everyday example.",
    "Make the response sound enthusiastic.",
]


# constraint groups that contradict each other (a JSON-only reply has no bullet list or postscript)
INCOMPATIBLE = [{"whole", "structure"}, {"whole", "start"}, {"whole", "ending"}, {"language", "case"}]


def _compatible(group: str, groups: set[str]) -> bool:
    if group and group in groups:
        return False
    return not any(group in pair and pair - {group} <= groups for pair in INCOMPATIBLE)


def compose(rng: random.Random, constraints: int, soft: bool) -> tuple[str, list[dict[str, Any]], list[str]]:
    """(prompt, verifiable constraints as {"id", "kwargs"}, soft constraints) for one task."""
    request = rng.choice(BASE_REQUESTS)
    chosen: list[dict[str, Any]] = []
    groups: set[str] = set()
    candidates = [
        kind for kind in KINDS.values() if kind.sample is not None or kind.id == "combination:repeat_prompt"
    ]
    rng.shuffle(candidates)
    for kind in candidates:
        if len(chosen) == constraints:
            break
        if not _compatible(kind.group, groups):
            continue
        kwargs = {"prompt_to_repeat": request} if kind.sample is None else kind.sample(rng)
        chosen.append({"id": kind.id, "kwargs": kwargs})
        groups.add(kind.group)
    soft_constraints = [rng.choice(SOFT_CONSTRAINTS)] if soft else []
    lines = [
        KINDS[constraint["id"]].describe(constraint["kwargs"]) for constraint in chosen
    ] + soft_constraints
    prompt = request + "\n\n" + "\n".join(f"- {line}" for line in lines)
    return prompt, chosen, soft_constraints
