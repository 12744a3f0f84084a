"""Putting the trainer's new weights where the rollouts are sampled (K2 report §3.3), timed per iteration.

- colocated, one process: the engine samples from the trained module itself; the "transfer" is nothing, and
  the cost is emptying the engine's prefix cache (its keys and values came from the old weights);
- colocated under FSDP2: the trained module is sharded, so every rank gathers the whole state (an
  all-gather: K2's checkpoint engine broadcasts the full parameter set likewise) into its engine's replica;
- endpoint: rank 0 writes the weights in the policy's own layout under `<run_dir>/weights/` (atomically) and
  asks the server to load them, SGLang's `POST /update_weights_from_disk` (which `openk2 serve` answers), so
  the same loop drives an SGLang or `openk2 serve` fleet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from openk2.io import publish_directory
from openk2.llm.engine import InProcessEngine
from openk2.train.checkpoint import FULL_ON_RANK_0, ModelFiles
from openk2.train.world import World, barrier

WEIGHTS_DIR = "weights"


class WeightSync(Protocol):
    mode: str

    def __call__(self) -> float:
        """Make the sampler use the trainer's current weights; returns the seconds it took."""


def _empty_prefix_cache(engine: InProcessEngine) -> None:
    if engine.prefix_cache is not None:
        engine.prefix_cache.clear()


@dataclass
class SharedModule:
    """The engine holds the trained module: only its prefix cache is stale."""

    engine: InProcessEngine
    mode: str = "colocated (one module)"

    def __call__(self) -> float:
        started = time.perf_counter()
        self.engine.scheduler.run_between_batches(lambda: _empty_prefix_cache(self.engine))
        return time.perf_counter() - started


@dataclass
class GatheredReplica:
    """FSDP2: every rank gathers the whole state into its engine's replica."""

    model: nn.Module
    engine: InProcessEngine
    mode: str = "colocated (FSDP2 shards gathered into each rank's replica)"

    def __call__(self) -> float:
        started = time.perf_counter()
        state = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True))
        replica: nn.Module = self.engine.runner.model  # type: ignore[attr-defined]

        def load() -> None:
            with torch.no_grad():
                replica.load_state_dict(state)
            _empty_prefix_cache(self.engine)

        self.engine.scheduler.run_between_batches(load)
        return time.perf_counter() - started


@dataclass
class ServerReload:
    """Write the weights, then ask the OpenAI-compatible server to load them from disk."""

    model: nn.Module
    files: ModelFiles
    run_dir: Path
    base_url: str
    world: World
    timeout_s: float
    mode: str = "endpoint (/update_weights_from_disk)"

    def __call__(self) -> float:
        import httpx

        started = time.perf_counter()
        state = get_model_state_dict(self.model, options=FULL_ON_RANK_0)
        if self.world.is_main:
            target = (self.run_dir / WEIGHTS_DIR).resolve()
            staging = target.with_name(f".{target.name}.tmp")
            if staging.exists():
                import shutil

                shutil.rmtree(staging)
            staging.mkdir(parents=True)
            self.files.write(state, staging)
            publish_directory(staging, target)
            root = self.base_url.rstrip("/").removesuffix("/v1")
            response = httpx.post(
                f"{root}/update_weights_from_disk", json={"model_path": str(target)}, timeout=self.timeout_s
            )
            answer = response.json()
            if response.status_code != 200 or not answer.get("success"):
                raise RuntimeError(f"{root}/update_weights_from_disk: {response.status_code} {answer}")
        barrier(self.world)
        return time.perf_counter() - started
