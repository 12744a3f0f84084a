"""A micro pipeline recipe for the tests: the small K2 of the pre-training tests, a few steps per stage.

Every stage is real (tokenizer, MuonClip pre-training, gym tasks, SFT, RL, evaluation, each through its own
`openk2` command); only the sizes are cut so that a whole run takes seconds per stage. Synthesis is left out
(its tests are tests/synth's; the pipeline treats it as any other file-producing stage).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

import openk2.gym
from tests.rl.rl_setup import REVERSAL, rl_sections
from tests.train.small_run import SMALL_MODEL, VOCAB, write_corpus

REPO = Path(__file__).resolve().parents[2]


def write_tasks(path: Path) -> Path:
    """40 train and 8 test digit-reversal tasks of the gym, as the tasks stage writes them."""
    environment = openk2.gym.make("logic", **REVERSAL)
    tasks = environment.tasks("train", n=40, seed=0) + environment.tasks("test", n=8, seed=0)
    path.write_text("".join(task.model_dump_json(exclude_none=True) + "\n" for task in tasks))
    return path


def micro_recipe(
    root: Path, rl: bool = False, evaluate: bool = False, tasks_stage: bool = True, longer: bool = False
) -> dict[str, Any]:
    """`tasks_stage=False`: SFT reads a task file written here instead of the pipeline's tasks stage (two
    `openk2 gym show` processes fewer, for the test that runs in CI). `longer`: pre-training and RL run long
    enough, with checkpoints along the way, for a kill to land between checkpoints."""
    corpus = root / "corpus"
    if not corpus.is_dir():
        corpus.mkdir(parents=True)
        write_corpus(corpus)
    recipe: dict[str, Any] = {
        "run": {"name": "micro", "output_dir": str(root / "runs")},
        "pretrain": {
            "data": dict(corpus=str(corpus), vocab_size=VOCAB, val_fraction=0.3, seed=0, seq_len=32),
            "run": dict(
                seed=0, steps=4, checkpoint_every=2, keep_checkpoints=2, val_every=4, val_max_batches=1
            ),
            "model": dict(preset="tiny", overrides={**SMALL_MODEL, "max_position_embeddings": 128}),
            "optim": dict(lr=3e-3),
            "schedule": dict(warmup_steps=1, decay_fraction=0.5, final_lr=3e-4),
            "train": dict(batch_size=4, dtype="float32"),
        },
        "sft": {
            "run": dict(seed=0, steps=3, checkpoint_every=3, keep_checkpoints=1, val_every=3),
            "sft": dict(seq_len=64),
            "optim": dict(lr=3e-3, weight_decay=0.0),
            "schedule": dict(kind="cosine", warmup_steps=1, final_lr=3e-4),
            "train": dict(batch_size=2, dtype="float32"),
        },
    }
    if tasks_stage:
        recipe["sft_data"] = {"tasks": [dict(env="logic", settings=REVERSAL, n=40, validation=8)]}
    else:
        recipe["sft"]["sft"]["sources"] = [dict(kind="tasks", path=str(write_tasks(root / "tasks.jsonl")))]
    if longer:
        recipe["pretrain"]["run"].update(steps=60, checkpoint_every=10, val_every=60)
    if rl:  # the RL tests' recipe, smaller; openk2 run fills in [init] and the run directory
        rl_recipe = rl_sections(
            root,
            "filled-in",
            run=dict(steps=3, checkpoint_every=1),
            train=dict(batch_size=16, dtype="float32"),
            rl=dict(groups_per_iteration=2, samples_per_group=4, eval={"every": 3, "tasks": 8}),
            tasks=[dict(env="logic", settings=REVERSAL, pool=50)],
        )
        del rl_recipe["init"], rl_recipe["run"]["name"], rl_recipe["run"]["output_dir"]
        rl_recipe["rl"]["tasks"] = rl_recipe.pop("tasks")
        recipe["rl"] = rl_recipe
    if rl and longer:
        recipe["rl"]["run"].update(steps=12, checkpoint_every=3)
    if evaluate:
        recipe["eval"] = {"after": ["sft", "rl"], "suites": "reversal", "n": 8, "max_tokens": 8}
    return recipe


def write_pipeline_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(recipe), encoding="utf-8")
    return path


def openk2_run(recipe: Path, **popen: Any) -> subprocess.CompletedProcess[str]:
    """`openk2 run --recipe R` as a user runs it: a subprocess, one thread per process."""
    return subprocess.run(
        [sys.executable, "-m", "openk2", "run", "--recipe", str(recipe)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
        cwd=REPO,
        check=False,
        **popen,
    )
