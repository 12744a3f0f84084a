"""The policy RL trains: an OpenK2 checkpoint or any transformers causal LM, and the engine that samples it.

Colocated (K2 report §3.3): in one process the sampling engine holds the trainer's own `nn.Module`, so an
optimizer step changes what the next rollout samples from, with no copy; the weight update costs emptying
the engine's prefix cache, whose keys and values the old weights computed. Under FSDP2 the trained module is
sharded, so each rank's engine holds a whole replica that the new weights are gathered into after each
iteration (`sync.py`): the role K2's checkpoint engine plays between its training and inference engines.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from openk2.llm.engine import EngineOptions, InProcessEngine
from openk2.llm.teacher import TEACHER_NAME, teacher_checkpoint
from openk2.model import K2ForCausalLM
from openk2.rl.recipe import RLRecipe
from openk2.train.checkpoint import K2ModelFiles, ModelFiles
from openk2.train.loop import k2_model, wrap_from_outside
from openk2.train.world import World

PENDING_REQUESTS = 1 << 16  # an iteration queues all its episodes at once; the engine's batch bounds the work


@dataclass
class Policy:
    model: nn.Module  # what the optimizer trains (FSDP2-wrapped under torchrun)
    engine: InProcessEngine  # samples: holds `model` itself, or a whole replica of it under FSDP2
    files: ModelFiles  # how checkpoints (and an endpoint's weight files) store it
    openk2: bool  # an OpenK2 model, trained in K2's chat format (re-tokenisation, PTX, critic SFT)
    tokenizer_file: Path | None  # OpenK2: the checkpoint's tokenizer.json
    description: str

    @property
    def colocated(self) -> bool:
        """The engine samples from the very module the optimizer updates."""
        return self.engine_model is self.model

    @property
    def engine_model(self) -> nn.Module:
        return self.engine.runner.model  # type: ignore[attr-defined,no-any-return]

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[batch, seq, vocab] of right-padded rows (padding after each row's last token)."""
        if self.openk2:
            return self.model(input_ids=input_ids).logits  # type: ignore[no-any-return]
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # type: ignore[no-any-return]


def load_policy(recipe: RLRecipe, world: World, device: torch.device) -> Policy:
    """The recipe's policy on the trainer's side, and its sampling engine."""
    options = EngineOptions(max_batch_size=recipe.rl.max_batch_size, max_pending=PENDING_REQUESTS)
    torch.manual_seed(recipe.run.seed)
    if recipe.init.is_openk2():
        return _openk2_policy(recipe, world, options, device)
    return _transformers_policy(recipe, options, device)


def _openk2_policy(recipe: RLRecipe, world: World, options: EngineOptions, device: torch.device) -> Policy:
    from openk2.llm.k2_engine import K2Engine
    from openk2.tokenizer import load_tokenizer

    directory = recipe.init.policy
    config = recipe.model_config_k2()
    model = wrap_from_outside(k2_model(config, directory, device), recipe, world)
    # FSDP2 shards `model`: every rank samples from a whole replica, refreshed after each iteration
    sampler: K2ForCausalLM = k2_model(config, directory, device) if world.is_distributed else model
    tokenizer_file = directory / "tokenizer.json"
    engine = K2Engine(sampler, load_tokenizer(tokenizer_file), directory.resolve().name, options=options)
    return Policy(
        model=model,
        engine=engine,
        files=K2ModelFiles(config, tokenizer_file),
        openk2=True,
        tokenizer_file=tokenizer_file,
        description=f"OpenK2 checkpoint {directory}",
    )


def _transformers_policy(recipe: RLRecipe, options: EngineOptions, device: torch.device) -> Policy:
    import os

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openk2.llm.transformers_engine import TransformersLLM

    os.environ["HF_HUB_OFFLINE"] = "1"  # a local directory only; never the hub
    directory = teacher_checkpoint() if recipe.init.is_teacher else recipe.init.policy
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, device_map=device)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    name = TEACHER_NAME if recipe.init.is_teacher else directory.resolve().name
    engine = TransformersLLM(model, tokenizer, name, options=options)
    return Policy(
        model=model,
        engine=engine,
        files=TransformersModelFiles(model, directory),
        openk2=False,
        tokenizer_file=None,
        description=f"transformers {type(model).__name__} from {directory}",
    )


@dataclass(frozen=True)
class TransformersModelFiles:
    """A transformers model in its own layout: `save_pretrained` files plus the tokenizer files it came with."""

    model: nn.Module
    source: Path  # the directory the policy was loaded from: its tokenizer and chat template files

    def write_config(self, directory: Path) -> None:
        self.model.config.save_pretrained(directory)  # type: ignore[union-attr,operator]
        self._copy_tokenizer(directory)

    def write(self, state: dict[str, Any], directory: Path) -> None:
        self.model.save_pretrained(directory, state_dict=state)  # type: ignore[operator]
        self._copy_tokenizer(directory)

    def _copy_tokenizer(self, directory: Path) -> None:
        for path in self.source.iterdir():
            if path.is_file() and (path.name.startswith("tokenizer") or path.suffix == ".jinja"):
                shutil.copyfile(path, directory / path.name)
        for name in ("special_tokens_map.json", "generation_config.json", "vocab.json", "merges.txt"):
            if (self.source / name).is_file() and not (directory / name).exists():
                shutil.copyfile(self.source / name, directory / name)
