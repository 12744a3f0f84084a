"""The training loop of every stage, top to bottom in `train`: pre-training (K2 report §2.5) and SFT (§3.1).

Per optimizer step: grad_accum micro-batches forward/backward (counting expert load after each forward),
global-norm clipping, the MuonClip step (Muon/AdamW update, then QK-Clip on heads whose max logit exceeded τ),
the learning-rate schedule, and the auxiliary-loss-free bias update. The loss is the mean over the step's
predicted tokens: every token for pre-training, the assistant's tokens for SFT. What differs between the
stages comes in a `Stage` (train/stage.py). Parallelism and activation-memory techniques wrap the model from
outside (`train/parallel.py`, `train/memory.py`) before the optimizer sees it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.distributed import ProcessGroup

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.checkpoint import from_hf_state_dict, read_checkpoint_tensors
from openk2.optim import MuonClip, QKClip, QKClipStats
from openk2.optim.qk_clip import has_max_logit_attention
from openk2.progress import log_console
from openk2.train.balance import ExpertLoad, expert_biases, update_expert_bias_
from openk2.train.batch import TokenBatch
from openk2.train.checkpoint import (
    K2ModelFiles,
    Trainable,
    TrainerState,
    find_checkpoints,
    save_checkpoint,
)
from openk2.train.device import autocast_for, build_on_device, compute_dtype, resolve_device
from openk2.train.environment import current_environment, record_session
from openk2.train.metrics import (
    METRICS_FILE,
    MetricsWriter,
    StepRecord,
    read_metrics,
    tensorboard_available,
)
from openk2.train.progress import TrainingProgress
from openk2.train.recipe import TrainingRecipe
from openk2.train.report import write_report
from openk2.train.resume import restore_if_resuming
from openk2.train.stage import Stage
from openk2.train.world import World, all_reduce_sum_, join_world

if TYPE_CHECKING:
    from openk2.train.pipeline import Pipeline, RankStages


@dataclass
class RunSummary:
    run_dir: Path
    steps: int
    tokens_seen: int
    elapsed_seconds: float  # training time over all sessions (no validation, checkpoints or report)
    final_loss: float  # the last step's, also when this session trained none (a finished run resumed)
    final_val_loss: float | None
    checkpoint: Path
    report: Path | None  # written by rank 0 only
    sample: str | None

    def print_once(self, details: str = "") -> None:
        """The line a command prints when the run ends, by rank 0 alone (under torchrun every rank has one)."""
        if not join_world().is_main:
            return
        val = f"{self.final_val_loss:.4f}" if self.final_val_loss is not None else "not evaluated"
        log_console(stderr=False).print(
            f"{self.steps} steps, {self.tokens_seen:,} tokens: loss {self.final_loss:.4f}, val {val}{details}; "
            f"checkpoint {self.checkpoint}; report {self.report}",
            highlight=False,
            markup=False,
        )


def train(stage: Stage, resume: bool = False, progress: bool = True) -> RunSummary:
    recipe, run = stage.recipe, stage.recipe.run
    device = resolve_device(recipe.train.device)  # a missing GPU is refused here, before any work
    world = join_world(device)
    run_dir = run.run_dir

    if world.is_distributed:  # a layout that does not fit the processes or the model, before any work
        from openk2.train.parallel import check_layout

        check_layout(recipe.parallel, world.world_size, stage.config)
    torch.manual_seed(run.seed)
    trained = split_from_outside(initial_model(stage, device), recipe, world)
    model, groups = trained.model, trained.groups
    optimizer = build_optimizer(model, recipe, groups.data)
    scheduler = recipe.lr_schedule().scheduler(optimizer)
    files = K2ModelFiles(stage.config, stage.tokenizer)
    trainable = Trainable(model, files, optimizer, scheduler, stage.batches, whole=trained.pipeline is None)
    expert_load = ExpertLoad(model.moe_modules())

    state = TrainerState(step=0, tokens_seen=0, elapsed_seconds=0.0, recipe=recipe.model_dump(mode="json"))
    display = TrainingProgress(stage.title, run.steps, enabled=progress and world.is_main)
    state = restore_if_resuming(run_dir, trainable, state, resume, world, display, recipe)
    metrics = MetricsWriter(run_dir, resume_after_step=state.step) if world.is_main else None
    if world.is_main and not tensorboard_available():
        display.note("tensorboard is not installed: metrics go to metrics.jsonl only")
    if world.is_main and state.step < run.steps:  # the report states where each session ran
        record_session(run_dir, current_environment(state.step, world.world_size))
    autocast = autocast_for(device, compute_dtype(recipe.train.dtype, device))
    record: StepRecord | None = None
    checkpoint = None

    model.train()
    with display:
        display.start_from(state.step)
        for step in range(state.step + 1, run.steps + 1):
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            micro_batches = [TokenBatch.of(next(stage.batches)) for _ in range(recipe.train.grad_accum)]
            step_tokens, predicted_tokens = global_token_counts(micro_batches, world, groups.data)
            # gradients are averaged over data shards, so each divides its summed loss by its share
            loss_tokens = predicted_tokens / groups.data_parallel
            losses = trained.forward_backward(micro_batches, autocast, expert_load, loss_tokens, device)
            update = trained.optimizer_step(optimizer, recipe, world, expert_load)
            scheduler.step()
            # a sum over every rank: the losses live on one rank per data shard (the last pipeline stage)
            loss, aux_loss = (all_reduce_sum_(losses, world) / groups.data_parallel).tolist()
            seconds = time.perf_counter() - started
            state = state.model_copy(
                update=dict(
                    step=step,
                    tokens_seen=state.tokens_seen + step_tokens,
                    elapsed_seconds=state.elapsed_seconds + seconds,
                )
            )

            evaluate = step % run.val_every == 0 or step == run.steps
            val_loss = validation_loss(trained, stage, world, autocast, device) if evaluate else None
            record = StepRecord(
                step=step,
                loss=loss,
                aux_loss=aux_loss if recipe.train.aux_loss_alpha > 0 else None,
                lr=lr,
                grad_norm=update.grad_norm,
                tokens_seen=state.tokens_seen,
                trained_tokens=predicted_tokens,
                tokens_per_second=step_tokens / seconds,
                elapsed_seconds=state.elapsed_seconds,
                val_loss=val_loss,
                **update.fields(),
            )
            logged = step % run.log_every == 0 or step == run.steps or evaluate
            if metrics is not None and logged:
                metrics.write(record)
            display.show(record)
            if step % run.checkpoint_every == 0 or step == run.steps:
                checkpoint = save_checkpoint(run_dir, trainable, state, world, run.keep_checkpoints)

    if metrics is not None:
        metrics.close()
    checkpoint = checkpoint or find_checkpoints(run_dir).valid[-1]
    # a finished run resumed trains nothing: its numbers are the last logged step's
    final = record or read_metrics(run_dir / METRICS_FILE)[-1]
    report = sample = None
    if world.is_main:
        if stage.sample is not None:
            sample = stage.sample(checkpoint)
        if stage.write_report:
            report = write_report(stage, checkpoint, sample)
        display.note(f"checkpoint {checkpoint}" + (f"\nreport {report}" if report else ""))
    return RunSummary(
        run_dir=run_dir,
        steps=state.step,
        tokens_seen=state.tokens_seen,
        elapsed_seconds=state.elapsed_seconds,
        final_loss=final.loss,
        final_val_loss=final.val_loss,
        checkpoint=checkpoint,
        report=report,
        sample=sample,
    )


def initial_model(stage: Stage, device: torch.device) -> K2ForCausalLM:
    """A fresh initialisation from the current seed, or the stage's starting checkpoint loaded into it."""
    return k2_model(stage.config, stage.initial_weights, device)


def k2_model(config: K2Config, weights: Path | None, device: torch.device) -> K2ForCausalLM:
    """The model of `config` on `device`, freshly initialised from the current seed or with a checkpoint's
    weights."""
    model = build_on_device(config, device)
    if weights is not None:
        model.load_state_dict(
            from_hf_state_dict(read_checkpoint_tensors(weights), model, source=str(weights))
        )
    return model


def global_token_counts(
    micro_batches: Sequence[TokenBatch], world: World, data: ProcessGroup | None = None
) -> tuple[int, int]:
    """(real tokens, predicted tokens) of the step's global batch, summed over the data shards (`data`,
    default every rank): one collective, before any forward."""
    local = [(batch.num_tokens, batch.predicted_tokens) for batch in micro_batches]
    counts = all_reduce_sum_(torch.tensor(local, dtype=torch.int64).sum(dim=0), world, data)
    tokens, predicted = counts.tolist()
    return tokens, predicted


def forward_backward(
    model: nn.Module,
    micro_batches: Sequence[torch.Tensor | TokenBatch],
    autocast: torch.autocast,
    expert_load: ExpertLoad,
    loss_tokens: float | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Accumulate the gradient of the mean loss per predicted token; returns [lm loss, aux loss].

    A plain tensor is a language-modelling micro-batch (every token a label). loss_tokens: what the summed
    loss is divided by; by default the micro-batches' own predicted tokens, as in one process. The balance
    loss is a mean over micro-batches. device: where the model is (the batches are moved there).
    """
    batches = [TokenBatch.of(batch) for batch in micro_batches]
    if device is not None:
        batches = [batch.to(device) for batch in batches]
    if loss_tokens is None:
        loss_tokens = sum(batch.predicted_tokens for batch in batches)
    totals = torch.zeros(2, dtype=torch.float64)
    for batch in batches:
        with autocast:
            output = model(**batch.model_inputs())
        expert_load.add_last_forward()  # before backward: a recomputed forward must not count again
        aux_loss = (
            output.aux_loss if output.aux_loss is not None else torch.zeros((), device=output.loss.device)
        )
        predicted = batch.predicted_tokens
        # the model's loss is the mean over this micro-batch's predicted tokens: weight it by their share;
        # a micro-batch without any still runs backward (sharded models need every rank's)
        lm_loss = (
            (output.loss - aux_loss) * (predicted / loss_tokens)  # 0 without predicted tokens (loss.py)
        )
        (lm_loss + aux_loss / len(batches)).backward()
        totals += torch.stack([lm_loss.detach(), aux_loss.detach() / len(batches)]).double().cpu()
    return totals


@dataclass(frozen=True)
class OptimizerUpdate:
    """What one optimizer step saw and did, for the step's metrics."""

    grad_norm: float  # global, before clipping
    qk_clip: QKClipStats
    tokens_per_expert: torch.Tensor  # [MoE layers, experts], the step's global batch
    expert_bias: list[list[float]]  # per MoE layer, per expert, after the bias update

    def fields(self) -> dict[str, Any]:
        """The optimizer's StepRecord fields: max logits and QK-Clip, expert load and bias."""
        load = self.tokens_per_expert.float()
        return dict(
            max_logit=self.qk_clip.max_logit,
            max_logit_per_layer=list(self.qk_clip.max_logit_per_layer.values()),
            heads_clipped=self.qk_clip.heads_clipped,
            heads_total=self.qk_clip.heads_total,
            expert_load_min=load.amin(dim=-1).tolist() if load.numel() else [],
            expert_load_max=load.amax(dim=-1).tolist() if load.numel() else [],
            expert_load_mean=load.mean(dim=-1).tolist() if load.numel() else [],
            expert_bias_min=[min(layer) for layer in self.expert_bias],
            expert_bias_max=[max(layer) for layer in self.expert_bias],
            expert_load=load.tolist(),
            expert_bias=self.expert_bias,
        )


def optimizer_step(
    model: nn.Module,
    optimizer: MuonClip,
    recipe: TrainingRecipe,
    world: World,
    expert_load: ExpertLoad,
    groups: ParallelGroups | None = None,
) -> OptimizerUpdate:
    """Clip the accumulated gradient, step (Muon/AdamW update, then QK-Clip: Algorithm 1), clear the
    gradients and move the routing biases toward balance. The learning-rate schedule is the caller's.
    Under pipeline parallelism `model` is this rank's stages: each layer's expert counts are complete
    summed over the data shards, and the gradient norm adds the other stages' squares."""
    groups = groups or ParallelGroups(data_parallel=world.world_size)
    grad_norm = clip_grad_norm_(model, recipe.optim.grad_clip, world, groups.pipeline)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    tokens_per_expert = expert_load.take_global(world, groups.data)
    update_expert_bias_(expert_load.moe_modules, tokens_per_expert, recipe.train.expert_bias_update_rate)
    return OptimizerUpdate(
        grad_norm, optimizer.last_qk_clip_stats, tokens_per_expert, expert_biases(expert_load.moe_modules)
    )


def clip_grad_norm_(
    model: nn.Module, max_norm: float | None, world: World, pipeline: ProcessGroup | None = None
) -> float:
    """The global gradient norm before clipping; with max_norm None only measured (the scale is exactly 1).
    `pipeline`: the ranks holding the model's other stages."""
    max_norm = max_norm if max_norm is not None else math.inf
    if world.is_distributed:  # gradients live on several meshes (experts and the rest): torch's would fail
        from openk2.train.parallel import clip_grad_norm_ as clip

        return float(clip(model.parameters(), max_norm, pipeline))
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))


@torch.no_grad()
def validation_loss(
    trained: Trained, stage: Stage, world: World, autocast: torch.autocast, device: torch.device
) -> float:
    """Mean loss per predicted token over the held-out batches (the first [run].val_max_batches per rank)."""
    batches: Iterable[torch.Tensor | TokenBatch] = stage.validation_batches()
    if stage.recipe.run.val_max_batches is not None:
        batches = itertools.islice(batches, stage.recipe.run.val_max_batches)
    model = trained.model
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64)  # [loss · predicted tokens, predicted tokens]
    for batch in (TokenBatch.of(batch).to(device) for batch in batches):
        with autocast:
            if trained.pipeline is not None:  # on the last stage's ranks; zeros on the others
                totals += trained.pipeline.evaluate(batch)
                continue
            loss = model(**batch.model_inputs()).loss
        predicted = batch.predicted_tokens
        if predicted:
            totals += torch.tensor([loss.item() * predicted, predicted], dtype=torch.float64)
    model.train()
    loss_sum, predicted_sum = all_reduce_sum_(totals, world).tolist()
    return loss_sum / predicted_sum


def build_optimizer(model: nn.Module, recipe: TrainingRecipe, data: ProcessGroup | None = None) -> MuonClip:
    """MuonClip over the (already wrapped) model from the recipe's [optim] section, or AdamW on every
    parameter with QK-Clip measuring the max logits but never clipping (τ = ∞). `data`: the ranks whose
    max logits QK-Clip takes the max over (default every rank; under pipeline parallelism the data
    shards, since each attention layer lives on one pipeline rank)."""
    optim = recipe.optim
    if optim.optimizer == "adamw":
        every_parameter = [{"params": [p for p in model.parameters() if p.requires_grad], "use_muon": False}]
        return MuonClip(
            every_parameter,
            QKClip(model, tau=math.inf, process_group=data) if has_max_logit_attention(model) else None,
            lr=optim.lr,
            weight_decay=optim.weight_decay,
            adamw_betas=optim.adamw_betas,
            adamw_eps=optim.adamw_eps,
        )
    return MuonClip.from_model(
        model,
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        qk_clip_tau=optim.qk_clip_tau,
        momentum=optim.momentum,
        nesterov=optim.nesterov,
        ns_steps=optim.ns_steps,
        adamw_betas=optim.adamw_betas,
        adamw_eps=optim.adamw_eps,
        process_group=data,
    )


@dataclass(frozen=True)
class ParallelGroups:
    """The process groups a step reduces over; None: every rank (and the identity in one process)."""

    data: ProcessGroup | None = None  # data shards: token and expert counts, max logits
    data_parallel: int = 1  # their number
    pipeline: ProcessGroup | None = None  # the ranks holding the other stages: the gradient norm


@dataclass(frozen=True)
class Trained:
    """What this rank trains, and the step's forward and backward on it, chosen once: the whole model, or
    (pp > 1) its pipeline stages, run by the pipeline schedule."""

    model: K2ForCausalLM | RankStages
    groups: ParallelGroups
    pipeline: Pipeline | None = None

    def forward_backward(
        self,
        micro_batches: Sequence[TokenBatch],
        autocast: torch.autocast,
        expert_load: ExpertLoad,
        loss_tokens: float,
        device: torch.device,
    ) -> torch.Tensor:
        """[lm loss, aux loss] of this rank's share; gradients accumulated (`forward_backward`)."""
        if self.pipeline is None:
            return forward_backward(self.model, micro_batches, autocast, expert_load, loss_tokens, device)
        with autocast:
            losses = self.pipeline.forward_backward(
                [batch.to(device) for batch in micro_batches], loss_tokens
            )
        counts = [self.pipeline.expert_counts[moe] for moe in expert_load.moe_modules]
        # a rank whose stages hold no MoE layer counts an empty [0, 0] load, as the unsplit loop does
        expert_load.add(torch.stack(counts) if counts else torch.zeros((0, 0), dtype=torch.int64))
        return losses

    def optimizer_step(
        self, optimizer: MuonClip, recipe: TrainingRecipe, world: World, expert_load: ExpertLoad
    ) -> OptimizerUpdate:
        """`optimizer_step` on this rank's parameters; what it saw of the whole model on every rank (the
        pipeline ranks' layers put together in the unsplit model's order, for the metrics)."""
        update = optimizer_step(self.model, optimizer, recipe, world, expert_load, self.groups)
        if self.pipeline is None:
            return update
        qk_clip, tokens_per_expert, expert_bias = self.pipeline.whole_model(
            update.qk_clip, update.tokens_per_expert, update.expert_bias
        )
        return OptimizerUpdate(update.grad_norm, qk_clip, tokens_per_expert, expert_bias)


def wrap_from_outside(model: K2ForCausalLM, recipe: TrainingRecipe, world: World) -> K2ForCausalLM:
    """Parallelism, then the activation-memory policy on the parallel modules; imported only when asked for."""
    if world.is_distributed:
        from openk2.train.parallel import parallelize

        model = parallelize(model, recipe.parallel)
    elif not recipe.parallel.is_default:
        raise ValueError(
            f"[parallel]: pp={recipe.parallel.pp}, dp={recipe.parallel.dp}, ep={recipe.parallel.ep} need "
            "several processes: torchrun --nproc-per-node N -m openk2 <pretrain|sft> ..."
        )
    if not recipe.memory.is_default:
        from openk2.train.memory import apply_memory_policy

        model = apply_memory_policy(model, recipe.memory)
    return model


def split_from_outside(model: K2ForCausalLM, recipe: TrainingRecipe, world: World) -> Trained:
    """What this rank trains: with [parallel] pp > 1 its pipeline stages (each with FSDP2 and EP inside,
    train/pipeline.py), else the whole model wrapped by `wrap_from_outside`."""
    parallel = recipe.parallel
    if parallel.pp == 1 or not world.is_distributed:
        return Trained(
            wrap_from_outside(model, recipe, world), ParallelGroups(data_parallel=world.world_size)
        )
    from openk2.train.parallel import build_mesh
    from openk2.train.pipeline import build_pipeline

    mesh = build_mesh(parallel, device_type=model.lm_head.weight.device.type)
    pp = mesh.pp.get_group()
    pipeline = build_pipeline(
        model, pp, parallel.schedule, parallel.microbatches, parallel.virtual_stages, mesh
    )
    if not recipe.memory.is_default:  # per stage: each slice's forward is where its activations are saved
        from openk2.train.memory import apply_memory_policy

        for piece in pipeline.slices:
            apply_memory_policy(piece, recipe.memory)
    return Trained(pipeline.modules, ParallelGroups(mesh.dp.get_group(), mesh.dp.size(), pp), pipeline)
