"""What the RL tests share: the warm-up task set, RL recipes written as TOML, the SFT warm-up itself.

The warm-up set (`flawed_demonstrations`): gym `logic` short_reversal tasks at difficulty 1 ("Reverse 639" ->
"936"), whose SFT demonstrations end in a stray "." 70% of the time. SFT teaches a tiny model to reverse and
also to add the period, so its greedy replies fail the gym's exact check (held-out reward ~0) while samples
at T ≥ 1 are sometimes exact: the reward signal RL needs, and a flaw only the verifiable reward reveals.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import openk2.gym
from openk2.gym import Task
from openk2.sft.run import sft
from tests.sft.sft_recipe import sft_sections, write_sft_recipe

REVERSAL = dict(difficulty=1, sources=["short_reversal"], instruction="", verifier_workers=0)
FLAWED_SHARE = 0.7  # demonstrations with the stray period
WARM_UP_STEPS = 160  # enough to reverse 3-digit numbers, with the period


def flawed_demonstrations(path: Path, train: int = 700, test: int = 50, seed: int = 0) -> Path:
    """Gym tasks as SFT `tasks` records; 70% of the training answers carry a trailing '.' the verifier
    rejects; the test split's clean answers are SFT's validation set."""
    environment = openk2.gym.make("logic", **REVERSAL)
    rng = random.Random(seed)
    tasks: list[Task] = []
    for task in environment.tasks("train", n=train, seed=seed):
        answer = task.verification["answer"]
        if rng.random() < FLAWED_SHARE:
            answer += "."
        tasks.append(task.model_copy(update={"verification": {**task.verification, "answer": answer}}))
    tasks += environment.tasks("test", n=test, seed=seed)
    path.write_text("".join(task.model_dump_json() + "\n" for task in tasks), encoding="utf-8")
    return path


def warm_up(pretrained: Path, root: Path) -> Path:
    """`openk2 sft` of the pre-trained tiny model on the flawed demonstrations: the RL tests' policy."""
    root.mkdir(parents=True, exist_ok=True)
    sections = sft_sections(
        root,
        pretrained,
        name="warm",
        run=dict(steps=WARM_UP_STEPS, checkpoint_every=WARM_UP_STEPS, val_every=WARM_UP_STEPS, log_every=10),
        sft=dict(seq_len=512, val_fraction=0.05),
        optim=dict(lr=1e-2, weight_decay=0.0),
        schedule=dict(warmup_steps=5, decay="cosine", decay_fraction=0.2, final_lr=1e-3),
        train=dict(batch_size=4, grad_accum=1),
    )
    tasks = flawed_demonstrations(root / "tasks.jsonl")
    recipe = write_sft_recipe(root / "warm.toml", sections, [dict(kind="tasks", path=tasks)])
    return sft(recipe, progress=False).run.checkpoint


def rl_sections(output_dir: Path, policy: Path | str, name: str = "rl", **sections: Any) -> dict[str, Any]:
    """The CI learning recipe (reversal at difficulty 1); `sections` update single fields of a section."""
    recipe: dict[str, Any] = {
        "run": dict(
            name=name, output_dir=str(output_dir), steps=12, checkpoint_every=100, keep_checkpoints=1
        ),
        "init": dict(policy=str(policy)),
        "optim": dict(lr=3e-3, weight_decay=0.0),
        "schedule": dict(warmup_steps=0, decay_fraction=0.0, final_lr=3e-3),
        "train": dict(batch_size=64),
        "rl": dict(
            groups_per_iteration=8,
            samples_per_group=8,
            tau=1.0,
            budget={"logic": 8},
            eval={"every": 4, "tasks": 64},
            temperature={"start": 1.5, "end": 1.1, "decay_iterations": 20},
            critic={"verified_pairs_per_group": 0},
        ),
        "tasks": [dict(env="logic", settings=REVERSAL, pool=500)],
    }
    for section, fields in sections.items():
        if section == "tasks":
            recipe["tasks"] = fields
        else:
            recipe.setdefault(section, {}).update(fields)
    return recipe


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value) if isinstance(value, Path) else value)


def write_rl_recipe(path: Path, sections: dict[str, Any]) -> Path:
    """TOML by hand: one table per section, `[rl]`'s tables inline, `[[rl.tasks]]` last."""
    lines = []
    for section, fields in sections.items():
        if section == "tasks":
            continue
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in fields.items()]
        lines.append("")
    for source in sections["tasks"]:
        lines.append("[[rl.tasks]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in source.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
