"""Selective recomputation (K2 report §2.4): cheap, large stages keep their inputs and rebuild their outputs.

A recomputed stage runs without building a graph in the forward pass and saves only its inputs. Its outputs
are not kept either, even though the next op saves them (a norm's output is saved by the GEMMs that read it):
when a saved tensor is a recomputed stage's output, or a view of one, the saved-tensor hooks store a
`RecomputedView` instead, and backward rebuilds the stage's outputs the first time any of them is needed.
The rebuilt graph then also serves the stage's own backward, so each stage reruns once per backward.
This is Megatron's "checkpoint without output"; torch.utils.checkpoint cannot do it, since it keeps the
outputs, and its own saved-tensor hooks would hide the region's inputs from FP8 storage and offload.

The rerun is the same ops on the same inputs, so outputs are bit-identical (unless the stored inputs are
FP8-compressed, the point of combining the two), and so are gradients, with one exception at rounding level:
an input that also feeds ops outside the stage (an RMSNorm's input is the residual stream) gets its
gradient terms summed in another order, which differs in the last bits of fp32.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from openk2.model.protocols import wrap_stage

Stage = Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]


class StageRun:
    """One forward call of a recomputed stage: how to rebuild its outputs with a graph, at most once."""

    def __init__(self, stage: Stage, inputs: Sequence[torch.Tensor]) -> None:
        self.stage = stage
        self.inputs_need_grad = [t.requires_grad for t in inputs]
        # backward runs outside the forward's autocast region: the rerun must cast as the forward did
        self.device_type = inputs[0].device.type
        self.autocast = (
            torch.is_autocast_enabled(self.device_type),
            torch.get_autocast_dtype(self.device_type),
        )
        # the autograd node holding the saved inputs, set by _Recompute.forward; weak, since the node
        # holds this run and a reference cycle through an autograd node is never collected
        self.node: weakref.ref[Any] | None = None
        self._rebuilt: tuple[list[torch.Tensor], tuple[torch.Tensor, ...]] | None = None

    def rebuilt(self) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        """(fresh leaf inputs, outputs computed from them with grad enabled)."""
        if self._rebuilt is None:
            node = self.node() if self.node is not None else None
            if node is None:
                raise RuntimeError("a recomputed stage's graph was freed before its outputs were needed")
            inputs = [
                saved.detach().requires_grad_(need)
                for saved, need in zip(node.saved_tensors, self.inputs_need_grad, strict=True)
            ]
            enabled, dtype = self.autocast
            with torch.enable_grad(), torch.autocast(self.device_type, dtype=dtype, enabled=enabled):
                outputs = self.stage(*inputs)
            self._rebuilt = (inputs, outputs if isinstance(outputs, tuple) else (outputs,))
        return self._rebuilt

    def take_rebuilt(self) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        rebuilt = self.rebuilt()
        self._rebuilt = None  # the stage's backward is the last reader
        return rebuilt


@dataclass
class RecomputedView:
    """What is saved in place of (a view of) a recomputed stage's output: no data, only where it lives."""

    run: StageRun
    output_index: int
    size: torch.Size
    stride: tuple[int, ...]
    storage_offset: int

    def rebuild(self) -> torch.Tensor:
        output = self.run.rebuilt()[1][self.output_index].detach()
        return output.as_strided(self.size, self.stride, self.storage_offset)


class RecomputedOutputs:
    """The live outputs of recomputed stages, found by storage so that views of them are found too."""

    def __init__(self) -> None:
        self._by_storage: dict[int, tuple[weakref.ref[torch.Tensor], StageRun, int]] = {}

    def add(self, output: torch.Tensor, run: StageRun, output_index: int) -> None:
        key = output.untyped_storage().data_ptr()
        # forget the entry when the output tensor dies, before its memory can be reused by another tensor
        entry = weakref.ref(output, lambda _: self._by_storage.pop(key, None))
        self._by_storage[key] = (entry, run, output_index)

    def view_of(self, tensor: torch.Tensor) -> RecomputedView | None:
        if tensor.numel() == 0:
            return None
        found = self._by_storage.get(tensor.untyped_storage().data_ptr())
        if found is None or found[0]() is None:
            return None
        _, run, output_index = found
        offset = int(tensor.storage_offset())  # a plain int outside torch.compile
        return RecomputedView(run, output_index, tensor.size(), tensor.stride(), offset)

    def run(
        self, stage: Stage, parameters: Sequence[nn.Parameter], inputs: Sequence[torch.Tensor]
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """stage(*inputs), recomputed in backward; parameters: the weights the stage reads."""
        if not torch.is_grad_enabled():
            return stage(*inputs)
        run = StageRun(stage, inputs)
        outputs = _Recompute.apply(run, len(inputs), *inputs, *parameters)
        for index, output in enumerate(outputs):
            self.add(output, run, index)
        return outputs if len(outputs) > 1 else outputs[0]


class _Recompute(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, run: StageRun, num_inputs: int, *inputs_and_parameters: torch.Tensor) -> Any:
        inputs = inputs_and_parameters[:num_inputs]
        outputs = run.stage(*inputs)  # no graph: autograd.Function.forward runs with grad disabled
        ctx.save_for_backward(*inputs)
        ctx.run, ctx.parameters = run, inputs_and_parameters[num_inputs:]
        run.node = weakref.ref(ctx)
        return outputs if isinstance(outputs, tuple) else (outputs,)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs, outputs = ctx.run.take_rebuilt()
        wrt = [t for t in inputs if t.requires_grad] + list(ctx.parameters)
        pairs = [
            (o, g) for o, g in zip(outputs, grad_outputs, strict=True) if g is not None and o.requires_grad
        ]
        if not pairs:
            return (None, None, *(None for _ in inputs), *(None for _ in ctx.parameters))
        grads = iter(
            torch.autograd.grad(
                [o for o, _ in pairs],
                wrt,
                [g.contiguous() for _, g in pairs],  # grouped_mm's backward rejects stride-0 gradients
                allow_unused=True,
            )
        )
        input_grads = [next(grads) if t.requires_grad else None for t in inputs]
        return (None, None, *input_grads, *grads)


def recompute_stage(owner: nn.Module, stage_name: str, outputs: RecomputedOutputs) -> None:
    """From now on the extension point owner.<stage_name> keeps its inputs, not its outputs."""
    wrap_stage(owner, stage_name, functools.partial(_recomputed, outputs))


def _recomputed(
    outputs: RecomputedOutputs, owner: nn.Module, stage: Stage, *inputs: torch.Tensor
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    weights = [p for p in owner.parameters() if p.requires_grad]  # the weights the stage reads
    return outputs.run(stage, weights, inputs)
