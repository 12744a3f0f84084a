"""Activation memory (K2 report §2.4), applied to a built model from outside, each technique a recipe switch.

- recompute: RMSNorms, SwiGLU activations and MLA up-projections keep their inputs and rebuild their
  outputs in backward (recompute.py); recompute_moe_down_proj does the same for the routed experts' down
  GEMM, whose output grows with the busiest expert's load.
- fp8: the routed experts' up-projection input (the dispatched tokens) and every SwiGLU activation's inputs
  (gate and up) are stored as FP8-E4M3 1×128 tiles with fp32 scales (fp8_storage.py); compute is unchanged.
- offload: every saved activation that is still stored goes to host memory (offload.py).

All three act through one pair of saved-tensor hooks that the model enters for the length of its forward,
so the training loop needs no context manager. Recomputing never reruns a router, so MoE.tokens_per_expert
keeps the forward's counts through backward. Weights are never quantised, offloaded or counted.
The shared experts' input is not FP8-stored: it is the post-attention RMSNorm's output, which the router
also saves in fp32 (router math stays fp32), and which recompute already rebuilds instead of storing.
"""

from __future__ import annotations

import functools
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from torch.utils.weak import WeakTensorKeyDictionary

from openk2.model.mla import MultiHeadLatentAttention
from openk2.model.moe import RoutedExperts, SwiGLUActivation
from openk2.model.norm import RMSNorm
from openk2.model.protocols import DOWN_PROJECTION, FORWARD, UP_PROJECTIONS, wrap_stage
from openk2.train.expert_parallel import ExpertParallelExperts
from openk2.train.fp8_storage import Fp8Tiles, dequantize_tiles, quantize_tiles
from openk2.train.offload import Offloaded, offload, onload
from openk2.train.recipe import MemorySection
from openk2.train.recompute import RecomputedOutputs, RecomputedView, Stage, recompute_stage

Packed = torch.Tensor | Fp8Tiles | Offloaded | RecomputedView
Model = TypeVar("Model", bound=nn.Module)


def apply_memory_policy(model: Model, config: MemorySection) -> Model:
    """Applies the recipe's switched-on [memory] techniques to model (in place, once) and returns it."""
    if config.is_default:
        return model
    memory = ActivationMemory(model, offload=config.offload)
    for module in list(model.modules()):
        routed_experts = isinstance(module, RoutedExperts | ExpertParallelExperts)
        if config.recompute and isinstance(module, RMSNorm | SwiGLUActivation):
            recompute_stage(module, FORWARD, memory.recomputed)
        if config.recompute and isinstance(module, MultiHeadLatentAttention):
            recompute_stage(module, UP_PROJECTIONS, memory.recomputed)
        if config.recompute_moe_down_proj and routed_experts:
            recompute_stage(module, DOWN_PROJECTION, memory.recomputed)
        # FP8 tagging wraps outermost, so a recomputed stage's saved inputs are the tagged tensors
        if config.fp8 and isinstance(module, SwiGLUActivation):
            memory.store_inputs_in_fp8(module, FORWARD)
        if config.fp8 and routed_experts:
            memory.store_inputs_in_fp8(module, UP_PROJECTIONS, first=1)
    model.register_forward_pre_hook(memory.enter)
    model.register_forward_hook(memory.exit, always_call=True)
    return model


class ActivationMemory:
    """The saved-tensor hooks of one model: recomputed outputs, FP8 tiles, offload, everything else kept."""

    def __init__(self, model: nn.Module, offload: bool) -> None:
        self.model = model
        self.offload = offload
        self.recomputed = RecomputedOutputs()
        self._fp8_inputs = WeakTensorKeyDictionary()  # tensor -> True, for this forward's tagged tensors
        # tensor -> (its version, weakref to its packed form): a tensor saved by several ops is packed once
        self._packed = WeakTensorKeyDictionary()
        self._weights: set[int] = set()
        self._active: list[torch.autograd.graph.saved_tensors_hooks] = []

    def store_inputs_in_fp8(self, owner: nn.Module, stage_name: str, first: int | None = None) -> None:
        """From now on the first `first` (default: all) tensor inputs of owner.<stage_name> are saved as FP8."""
        wrap_stage(owner, stage_name, functools.partial(self._tag_fp8_inputs, first))

    def _tag_fp8_inputs(
        self, first: int | None, owner: nn.Module, stage: Stage, *inputs: torch.Tensor
    ) -> Any:
        for tensor in inputs[:first]:
            self._fp8_inputs[tensor] = True
        return stage(*inputs)

    def enter(self, module: nn.Module, args: Any) -> None:
        self._weights = weight_storages(self.model)
        hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)
        hooks.__enter__()
        self._active.append(hooks)

    def exit(self, module: nn.Module, args: Any, output: Any) -> None:
        self._active.pop().__exit__(None, None, None)

    def pack(self, tensor: torch.Tensor) -> Packed:
        """Never returns the tensor itself: a node saving its own output would then hold the output, whose
        grad_fn is that node, a reference cycle through C++ that no garbage collector frees."""
        if tensor.untyped_storage().data_ptr() in self._weights:
            return tensor.detach()
        packed: Packed | None = self.recomputed.view_of(tensor)
        if packed is None:
            version, earlier = self._packed.get(tensor, (None, None))
            packed = earlier() if earlier is not None and version == tensor._version else None
        if packed is None:
            packed = quantize_tiles(tensor) if tensor in self._fp8_inputs else tensor.detach()
            if self.offload:
                packed = offload(packed)
            self._packed[tensor] = (tensor._version, weakref.ref(packed))
        ledger = _LEDGER.get()
        if ledger is not None:
            ledger.record(packed)
        return packed

    @staticmethod
    def unpack(packed: Packed) -> torch.Tensor:
        if isinstance(packed, RecomputedView):
            return packed.rebuild()
        if isinstance(packed, Offloaded):
            packed = onload(packed)
        if isinstance(packed, Fp8Tiles):
            return dequantize_tiles(packed)
        return packed


def weight_storages(model: nn.Module) -> set[int]:
    """Storage addresses of every parameter and buffer: saved views of weights are weights too."""
    tensors = [*model.parameters(), *model.buffers()]
    # sharded (DTensor) parameters: their local shard owns the storage
    local = [t.to_local() if isinstance(t, DTensor) else t for t in tensors]
    return {t.untyped_storage().data_ptr() for t in local if t.numel() > 0}


class SavedActivationLedger:
    """Bytes autograd holds for backward, per storage kind, each storage counted once, weights excluded.

    Kinds: "stored" (full precision, where it was made), "fp8" (FP8 tiles), "offloaded" (in host memory;
    on a CPU-only machine that is the same memory); "recomputed" tensors are counted but hold no bytes.
    Bytes are also summed per `scope`, a label the caller may switch during the forward (e.g. per layer).
    """

    def __init__(self, model: nn.Module) -> None:
        self._weights = weight_storages(model)
        self._seen: set[int] = set()
        self.bytes: Counter[str] = Counter()
        self.tensors: Counter[str] = Counter()
        self.scope = "model"
        self.bytes_by_scope: Counter[str] = Counter()

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def record(self, packed: Packed) -> None:
        if isinstance(packed, RecomputedView):
            self.tensors["recomputed"] += 1
            return
        value = packed.value if isinstance(packed, Offloaded) else packed
        kind = (
            "offloaded"
            if isinstance(packed, Offloaded)
            else "fp8"
            if isinstance(value, Fp8Tiles)
            else "stored"
        )
        storages = [
            t.untyped_storage() for t in (value.tensors() if isinstance(value, Fp8Tiles) else (value,))
        ]
        if any(storage.data_ptr() in self._weights for storage in storages):
            return
        self.tensors[kind] += 1
        for storage in storages:
            if storage.data_ptr() not in self._seen:
                self._seen.add(storage.data_ptr())
                self.bytes[kind] += storage.nbytes()
                self.bytes_by_scope[self.scope] += storage.nbytes()


_LEDGER: ContextVar[SavedActivationLedger | None] = ContextVar("saved_activation_ledger", default=None)


@contextmanager
def count_saved_activations(model: nn.Module) -> Iterator[SavedActivationLedger]:
    """Counts what the forwards run inside the block leave saved for backward, after any memory policy."""
    ledger = SavedActivationLedger(model)
    token = _LEDGER.set(ledger)

    def pack(tensor: torch.Tensor) -> torch.Tensor:  # a model without a policy: every tensor is stored
        ledger.record(tensor)
        return tensor.detach()  # not the tensor itself: see ActivationMemory.pack

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, _identity):
            yield ledger
    finally:
        _LEDGER.reset(token)


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor
