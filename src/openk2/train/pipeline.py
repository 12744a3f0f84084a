"""Pipeline parallelism (K2 report §2.4: PP with virtual stages, interleaved 1F1B), from outside the model.

`K2ForCausalLM` is cut into `pp × virtual_stages` contiguous slices of decoder layers (`DecoderSlice`): the
first also embeds the tokens, the last also applies the final norm; the loss (fused with lm_head,
model/loss.py) runs on the last slice's output. Stage s lives on pipeline rank s mod pp, so with virtual
stages each rank holds several non-adjacent slices (Interleaved1F1B). `torch.distributed.pipelining` runs
the schedule: micro-batch activations go forward rank to rank, their gradients back, and each stage's
gradients are the sum over micro-batches divided by their number: the gradient of the mean loss over the
whole batch when micro-batches predict equally many tokens (pre-training: every token).

What stays exact across stages: QK-Clip needs each head's max logit over the step, and every attention layer
lives on exactly one pipeline rank, which sees every micro-batch: its S_max is complete there (and is reduced
over the data-parallel group only). Expert counts likewise: each MoE layer counts its own micro-batches
(a forward hook), and only the per-layer tensors of the different ranks are put side by side for a report.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B
from torch.distributed.pipelining.stage import _PipelineStageBase

from openk2.model import K2ForCausalLM, MoE
from openk2.model.loss import linear_cross_entropy, next_token_targets

SCHEDULES = ("1F1B", "Interleaved1F1B")


class DecoderSlice(nn.Module):
    """Decoder layers [start, stop) of a K2ForCausalLM (sharing its modules), with the embedding on the first
    slice and the final norm and lm_head on the last. Input: token ids (first) or hidden states."""

    def __init__(self, model: K2ForCausalLM, layers: range, first: bool, last: bool) -> None:
        super().__init__()
        self.embed_tokens = model.model.embed_tokens if first else None
        self.layers = nn.ModuleList(model.model.layers[index] for index in layers)
        self.norm = model.model.norm if last else None
        self.lm_head = model.lm_head if last else None
        self.rotary_emb = model.model.rotary_emb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.embed_tokens(x) if self.embed_tokens is not None else x
        cos, sin = self.rotary_emb(torch.arange(hidden.shape[1], device=hidden.device))
        for layer in self.layers:
            hidden = layer(hidden, cos, sin)
        return self.norm(hidden) if self.norm is not None else hidden

    def next_token_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The last slice's loss: mean cross-entropy of one micro-batch, fused with lm_head."""
        assert self.lm_head is not None, "only the last slice computes the loss"
        return linear_cross_entropy(hidden.flatten(0, 1), self.lm_head.weight, next_token_targets(labels))


def split_layers(num_layers: int, num_stages: int) -> list[range]:
    """Contiguous, as even as possible (earlier stages take the remainder); refuses more stages than layers."""
    if num_stages > num_layers:
        raise ValueError(
            f"[parallel] pp × virtual_stages = {num_stages} pipeline stages exceed the model's "
            f"num_hidden_layers = {num_layers}: every stage needs at least one decoder layer"
        )
    base, extra = divmod(num_layers, num_stages)
    bounds = [0]
    for stage in range(num_stages):
        bounds.append(bounds[-1] + base + (stage < extra))
    return [range(start, stop) for start, stop in itertools.pairwise(bounds)]


@dataclass
class Pipeline:
    """This rank's slices of the model and the schedule that runs them."""

    slices: list[DecoderSlice]
    schedule: Schedule1F1B | ScheduleInterleaved1F1B
    is_last: bool  # holds the last stage: it sees the losses
    expert_counts: dict[MoE, torch.Tensor] = field(default_factory=dict)

    def step(self, input_ids: torch.Tensor, labels: torch.Tensor) -> float | None:
        """Forward and backward of one batch (split into the schedule's micro-batches), gradients accumulated
        into the slices' parameters. Returns the batch's mean loss on the last stage's rank, else None."""
        self.expert_counts.clear()
        losses: list[torch.Tensor] = []
        if self.is_last:
            self.schedule.step(input_ids, target=labels, losses=losses)
        else:
            self.schedule.step(input_ids, target=labels)
        return float(torch.stack(losses).detach().mean()) if self.is_last else None

    def modules(self) -> RankSlices:
        """All of this rank's slices as one module (for the optimizer and QK-Clip)."""
        return RankSlices(self.slices)


class RankSlices(nn.ModuleList):
    """One rank's slices; names its lm_head as HF models do, so the optimizer gives it AdamW, not Muon."""

    def get_output_embeddings(self) -> nn.Module | None:
        heads = [
            piece.lm_head for piece in self if isinstance(piece, DecoderSlice) and piece.lm_head is not None
        ]
        return heads[0] if heads else None


def build_pipeline(
    model: K2ForCausalLM,
    group: dist.ProcessGroup,
    schedule: str,
    n_microbatches: int,
    microbatch_shape: tuple[int, int],
    virtual_stages: int = 1,
) -> Pipeline:
    """Cut `model` into stages for this rank of the pipeline `group` and build `schedule` over them.

    1F1B takes one stage per rank; Interleaved1F1B takes `virtual_stages` ≥ 2 per rank. microbatch_shape:
    [sequences, tokens] of one micro-batch. The stages are given their activation shapes up front, so the
    schedule never runs a shape-probing forward (which would count as a training forward for the expert
    load and QK-Clip).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"[parallel] schedule: expected one of {list(SCHEDULES)}, got {schedule!r}")
    if schedule == "1F1B" and virtual_stages != 1:
        raise ValueError(f"[parallel] virtual_stages: 1F1B runs one stage per rank, got {virtual_stages}")
    pp, rank = dist.get_world_size(group), dist.get_rank(group)
    num_stages = pp * virtual_stages
    layer_ranges = split_layers(model.config.num_hidden_layers, num_stages)
    if n_microbatches % pp:
        raise ValueError(f"n_microbatches: must be a multiple of pp={pp}, got {n_microbatches}")
    device = model.lm_head.weight.device
    stage_ids = [rank + pp * virtual for virtual in range(virtual_stages)]  # loop-style placement
    slices = [DecoderSlice(model, layer_ranges[s], first=s == 0, last=s == num_stages - 1) for s in stage_ids]
    hidden = torch.empty(*microbatch_shape, model.config.hidden_size, device=device)
    received = hidden.clone().requires_grad_()  # activations whose gradient is sent back
    token_ids = torch.empty(microbatch_shape, dtype=torch.long, device=device)
    stages: list[_PipelineStageBase] = [
        PipelineStage(
            piece,
            s,
            num_stages,
            device,
            input_args=token_ids if s == 0 else received,
            output_args=hidden,
            input_grads=None if s == 0 else hidden,  # token ids have no gradient
            output_grads=hidden,
            group=group,
        )
        for piece, s in zip(slices, stage_ids, strict=True)
    ]
    last = slices[-1] if stage_ids[-1] == num_stages - 1 else None
    # every rank passes a loss function: without one a schedule runs forward only
    loss = last.next_token_loss if last is not None else _loss_of_another_rank
    runner = (
        Schedule1F1B(stages[0], n_microbatches, loss_fn=loss)
        if schedule == "1F1B"
        else ScheduleInterleaved1F1B(stages, n_microbatches, loss_fn=loss)
    )
    pipeline = Pipeline(slices, runner, is_last=last is not None)
    for piece in slices:
        for moe in (module for module in piece.modules() if isinstance(module, MoE)):
            moe.register_forward_hook(_count_into(pipeline.expert_counts))
    return pipeline


def _loss_of_another_rank(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("the loss is computed on the rank holding the last pipeline stage")


def _count_into(totals: dict[MoE, torch.Tensor]) -> Callable[[nn.Module, object, object], None]:
    """A forward hook summing a MoE layer's routed-token counts over the step's micro-batches."""

    def count(module: nn.Module, inputs: object, output: object) -> None:
        assert isinstance(module, MoE) and module.tokens_per_expert is not None
        seen = totals.get(module)
        totals[module] = module.tokens_per_expert.clone() if seen is None else seen + module.tokens_per_expert

    return count
