"""Pipeline parallelism (K2 report §2.4: PP with virtual stages, interleaved 1F1B), from outside the model.

`K2ForCausalLM` is cut into `pp × virtual_stages` contiguous slices of decoder layers (`DecoderSlice`): the
first also embeds the tokens, the last also applies the final norm; the loss (fused with lm_head,
model/loss.py) runs on the last slice's output. Stage s lives on pipeline rank s mod pp, so with virtual
stages each rank holds several non-adjacent slices (Interleaved1F1B). `torch.distributed.pipelining` runs
the schedule: micro-batch activations go forward rank to rank, their gradients back. Each micro-batch's loss
is its summed token losses over the step's predicted tokens (per data shard), so the schedule only adds
gradients: the gradient of the mean loss over the step, with accumulated batches and masked labels alike.

Inside a stage (train/parallel.py): routed experts split over "ep", then FSDP2 over "dp" per decoder layer
and at the slice, which is an FSDP root and so stays gathered from its forward to the loss's lm_head.

What stays exact across stages: QK-Clip needs each head's max logit over the step, and every attention layer
lives on exactly one pipeline rank, which sees every micro-batch: its S_max is complete there and is reduced
over the data-parallel group only. Expert counts likewise: each MoE layer counts its own training
micro-batches (a forward hook), summed over the data-parallel group, so the bias update sees all of a
layer's tokens. The gradient norm adds every stage's squares over the pipeline group.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B
from torch.distributed.pipelining.stage import _PipelineStageBase
from torch.distributed.tensor import DTensor

from openk2.model import K2ForCausalLM, MoE
from openk2.model.loss import linear_cross_entropy, next_token_targets
from openk2.model.transformer import document_causal_mask
from openk2.optim import QKClipStats
from openk2.train.batch import IGNORE_INDEX, TokenBatch
from openk2.train.parallel import ParallelMesh, apply_expert_parallel_if_split, shard_data_parallel

SCHEDULES = ("1F1B", "Interleaved1F1B")


class DecoderSlice(nn.Module):
    """Decoder layers [start, stop) of a K2ForCausalLM (sharing its modules), with the embedding on the first
    slice and the final norm and lm_head on the last. Input: token ids (first) or hidden states."""

    def __init__(self, model: K2ForCausalLM, layers: range, first: bool, last: bool) -> None:
        super().__init__()
        self.layer_numbers = layers  # in the unsplit model
        self.embed_tokens = model.model.embed_tokens if first else None
        self.layers = nn.ModuleList(model.model.layers[index] for index in layers)
        self.norm = model.model.norm if last else None
        self.lm_head = model.lm_head if last else None
        self.rotary_emb = model.model.rotary_emb

    def forward(
        self,
        x: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """position_ids, document_ids [batch, seq]: packed rows, as in `K2Model.forward` (every stage gets them)."""
        hidden = self.embed_tokens(x) if self.embed_tokens is not None else x
        if position_ids is None:
            position_ids = torch.arange(hidden.shape[1], device=hidden.device)
        cos, sin = self.rotary_emb(position_ids)
        visible = None if document_ids is None else document_causal_mask(document_ids)
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, None, visible)
        return self.norm(hidden) if self.norm is not None else hidden

    def next_token_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The last slice's loss: mean cross-entropy of one micro-batch, fused with lm_head."""
        assert self.lm_head is not None, "only the last slice computes the loss"
        weight = self.lm_head.weight
        # under FSDP2 the slice is a root, whose parameters stay gathered from its forward until backward
        assert not isinstance(weight, DTensor), "lm_head is still sharded: the slice must be an FSDP root"
        return linear_cross_entropy(hidden.flatten(0, 1), weight, next_token_targets(labels))


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
    """This rank's slices of the model and the schedule that runs them over the pipeline group.

    Every rank of one pipeline reads the same batch: the first stage its token ids, the last its labels.
    The loss of each micro-batch is weighted by its share of the step's predicted tokens (`loss_tokens`),
    exactly as the unsplit loop weights its micro-batches, so the schedule sums gradients unscaled.
    """

    slices: list[DecoderSlice]
    group: dist.ProcessGroup
    stage_ids: list[int]  # the global stage index of each slice
    num_stages: int
    schedule: str
    n_microbatches: int
    hidden_size: int
    expert_counts: dict[MoE, torch.Tensor] = field(default_factory=dict)
    loss_tokens: float = 1.0  # what the step's summed token losses are divided by
    _schedules: dict[tuple[int, int], Schedule1F1B | ScheduleInterleaved1F1B] = field(default_factory=dict)

    @property
    def is_last(self) -> bool:
        """Holds the last stage: it sees the labels and the losses."""
        return self.stage_ids[-1] == self.num_stages - 1

    def forward_backward(self, micro_batches: Sequence[TokenBatch], loss_tokens: float) -> torch.Tensor:
        """Forward and backward of the step's batches, each cut into the schedule's micro-batches, gradients
        accumulated into the slices' parameters. Returns [lm loss, aux loss]: the step's share of the mean
        loss on the last stage's rank, zeros on the others (a sum over ranks collects it)."""
        self.expert_counts.clear()
        self.loss_tokens = loss_tokens
        total = sum(self._run(batch, train=True) for batch in micro_batches)
        return torch.tensor([float(total), 0.0], dtype=torch.float64)

    @torch.no_grad()
    def evaluate(self, batch: TokenBatch) -> torch.Tensor:
        """[Σ token losses, predicted tokens] of a held-out batch on the last stage's rank, zeros elsewhere."""
        self.loss_tokens = 1.0
        for piece in self.slices:
            piece.eval()
        try:
            total = self._run(batch, train=False)
        finally:
            for piece in self.slices:
                piece.train()
        predicted = batch.predicted_tokens if self.is_last else 0
        return torch.tensor([float(total), predicted], dtype=torch.float64)

    def _run(self, batch: TokenBatch, train: bool) -> float:
        sequences, tokens = batch.input_ids.shape
        schedule = self._schedule_for((sequences, tokens))
        losses: list[torch.Tensor] = []
        run = schedule.step if train else schedule.eval
        # keyword arguments reach every stage, cut into the same micro-batches as the ids
        packed = {"position_ids": batch.position_ids, "document_ids": batch.document_ids}
        rows: dict[str, Any] = {name: value for name, value in packed.items() if value is not None}
        run(batch.input_ids, target=batch.labels, losses=losses if self.is_last else None, **rows)
        return float(torch.stack(losses).detach().sum()) if self.is_last else 0.0

    def _loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One micro-batch's summed token losses over the step's `loss_tokens` (the last stage's loss_fn)."""
        predicted = int((labels[:, 1:] != IGNORE_INDEX).sum())
        return self.slices[-1].next_token_loss(hidden, labels) * (predicted / self.loss_tokens)

    def _schedule_for(self, batch_shape: tuple[int, int]) -> Schedule1F1B | ScheduleInterleaved1F1B:
        """The schedule for batches of `batch_shape` (training and validation batches may differ), built once:
        its stages are given their activation shapes, so no shape-probing forward runs (it would count as
        a training forward for the expert load and QK-Clip)."""
        if batch_shape in self._schedules:
            return self._schedules[batch_shape]
        sequences, tokens = batch_shape
        if sequences % self.n_microbatches:
            raise ValueError(
                f"[parallel].microbatches {self.n_microbatches} does not divide a batch of {sequences} sequences"
            )
        device = self.slices[0].rotary_emb.inv_freq.device
        shape = (sequences // self.n_microbatches, tokens)
        hidden = torch.empty(*shape, self.hidden_size, device=device)
        received = hidden.clone().requires_grad_()  # activations whose gradient is sent back
        token_ids = torch.empty(shape, dtype=torch.long, device=device)
        stages: list[_PipelineStageBase] = [
            PipelineStage(
                piece,
                s,
                self.num_stages,
                device,
                input_args=token_ids if s == 0 else received,
                output_args=hidden,
                input_grads=None if s == 0 else hidden,  # token ids have no gradient
                output_grads=hidden,
                group=self.group,
            )
            for piece, s in zip(self.slices, self.stage_ids, strict=True)
        ]
        # every rank passes a loss function: without one a schedule runs forward only
        loss = self._loss if self.is_last else _loss_of_another_rank
        runner = (
            Schedule1F1B(stages[0], self.n_microbatches, loss_fn=loss, scale_grads=False)
            if self.schedule == "1F1B"
            else ScheduleInterleaved1F1B(stages, self.n_microbatches, loss_fn=loss, scale_grads=False)
        )
        self._schedules[batch_shape] = runner
        return runner

    @functools.cached_property
    def modules(self) -> RankStages:
        """This rank's part of the model as one module, under the unsplit model's names (for the optimizer,
        QK-Clip, the metrics and state dicts)."""
        return RankStages(self.slices)

    def whole_model(
        self, qk_clip: QKClipStats, tokens_per_expert: torch.Tensor, expert_bias: list[list[float]]
    ) -> tuple[QKClipStats, torch.Tensor, list[list[float]]]:
        """What this rank's stages saw in an optimizer step (max logits per attention layer, [MoE layers,
        experts] counts, routing biases), put together with the other pipeline ranks' on every rank, in the
        unsplit model's layer order (for the metrics)."""
        names = {id(module): name for name, module in self.modules.named_modules()}
        moe_layers = [layer_number(names[id(moe)]) for moe in self.modules.moe_modules()]
        mine = (
            qk_clip.max_logit_per_layer,
            qk_clip.heads_clipped,
            qk_clip.heads_total,
            list(zip(moe_layers, tokens_per_expert, expert_bias, strict=True)),
        )
        stages: list[Any] = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(stages, mine, group=self.group)
        max_logits = {name: value for stage in stages for name, value in stage[0].items()}
        moe = sorted((layer for stage in stages for layer in stage[3]), key=lambda layer: layer[0])
        stats = QKClipStats(
            dict(sorted(max_logits.items(), key=lambda item: layer_number(item[0]))),
            heads_clipped=sum(stage[1] for stage in stages),
            heads_total=sum(stage[2] for stage in stages),
        )
        counts = [counts for _, counts, _ in moe]
        return (
            stats,
            torch.stack(counts) if counts else torch.zeros((0, 0), dtype=torch.int64),
            [bias for _, _, bias in moe],
        )


class RankStages(nn.Module):
    """One rank's slices, their modules registered as in `K2ForCausalLM` (model.embed_tokens,
    model.layers.N, model.norm, lm_head), so names are the unsplit model's: the optimizer sees the lm_head
    (AdamW, not Muon), QK-Clip and the metrics name layers by their number, state dicts use the full names."""

    def __init__(self, slices: list[DecoderSlice]) -> None:
        super().__init__()
        self.model = nn.Module()
        first = next((piece.embed_tokens for piece in slices if piece.embed_tokens is not None), None)
        if first is not None:
            self.model.embed_tokens = first
        self.model.layers = nn.ModuleDict(
            {
                str(number): layer
                for piece in slices
                for number, layer in zip(piece.layer_numbers, piece.layers, strict=True)
            }
        )
        for piece in slices:
            if piece.norm is not None and piece.lm_head is not None:
                self.model.norm, self.lm_head = piece.norm, piece.lm_head

    def get_output_embeddings(self) -> nn.Module | None:
        return getattr(self, "lm_head", None)

    def moe_modules(self) -> list[MoE]:
        """This rank's MoE layers, in layer order."""
        return [module for module in self.modules() if isinstance(module, MoE)]


def layer_number(name: str) -> int:
    """N of a module named "model.layers.N…"."""
    return int(name.split(".")[2])


def build_pipeline(
    model: K2ForCausalLM,
    group: dist.ProcessGroup,
    schedule: str,
    n_microbatches: int,
    virtual_stages: int = 1,
    mesh: ParallelMesh | None = None,
) -> Pipeline:
    """Cut `model` into stages for this rank of the pipeline `group` and run `schedule` over them.

    1F1B takes one stage per rank; Interleaved1F1B takes `virtual_stages` ≥ 2 per rank. With `mesh`, each
    stage is split further inside: routed experts over "ep", then FSDP2 over "dp" per decoder layer and at
    the slice (the embedding, final norm and lm_head), as `parallelize` does for the unsplit model.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"[parallel] schedule: expected one of {list(SCHEDULES)}, got {schedule!r}")
    if schedule == "1F1B" and virtual_stages != 1:
        raise ValueError(f"[parallel] virtual_stages: 1F1B runs one stage per rank, got {virtual_stages}")
    pp, rank = dist.get_world_size(group), dist.get_rank(group)
    num_stages = pp * virtual_stages
    layer_ranges = split_layers(model.config.num_hidden_layers, num_stages)
    if n_microbatches % pp:
        raise ValueError(f"[parallel] microbatches: must be a multiple of pp={pp}, got {n_microbatches}")
    if mesh is not None:
        apply_expert_parallel_if_split(model, mesh)
    stage_ids = [rank + pp * virtual for virtual in range(virtual_stages)]  # loop-style placement
    slices = [DecoderSlice(model, layer_ranges[s], first=s == 0, last=s == num_stages - 1) for s in stage_ids]
    if mesh is not None and mesh.dp.size() > 1:
        for piece in slices:  # each slice is an FSDP root: it stays gathered from its forward to the loss
            shard_data_parallel(piece, piece.layers, mesh)
    pipeline = Pipeline(
        slices, group, stage_ids, num_stages, schedule, n_microbatches, model.config.hidden_size
    )
    for piece in slices:
        for moe in (module for module in piece.modules() if isinstance(module, MoE)):
            moe.register_forward_hook(_count_into(pipeline.expert_counts))
    return pipeline


def _loss_of_another_rank(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("the loss is computed on the rank holding the last pipeline stage")


def _count_into(totals: dict[MoE, torch.Tensor]) -> Callable[[nn.Module, object, object], None]:
    """A forward hook summing a MoE layer's routed-token counts over the step's training micro-batches."""

    def count(module: nn.Module, inputs: object, output: object) -> None:
        assert isinstance(module, MoE) and module.tokens_per_expert is not None
        if not module.training:  # validation forwards are not part of the step's load
            return
        seen = totals.get(module)
        totals[module] = module.tokens_per_expert.clone() if seen is None else seen + module.tokens_per_expert

    return count
