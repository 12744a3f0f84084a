"""Run by test_pipeline.py: `torchrun --nproc-per-node N distributed_pipeline_steps.py LAYOUT[;LAYOUT...] RESULT_JSON`
(gloo); one run per layout, in one launch, results keyed by the layout. A layout is `[parallel]` fields,
e.g. "pp=2,dp=2,ep=2,schedule=Interleaved1F1B,virtual_stages=2,microbatches=2"; "memory=recompute+fp8"
switches `[memory]` policies on, in the stages and in the unsplit copy alike; "packed=1" trains on SFT's
packed rows (per-document positions and attention, masked labels) instead of pre-training's.

Every rank builds the tiny K2 with the same seed and keeps an unsplit copy. For a few steps the training
loop's own pieces (`split_from_outside`: the pipeline split with FSDP2 and EP inside each stage, the chosen
`forward_backward`, `Trained.optimizer_step` with its global-norm clipping, QK-Clip and expert-bias update) train
on this rank's data shard, two accumulated batches a step, while the copy trains in one process on the whole
global batch with MuonClip (gradient norm in float64), QK-Clip at a τ low enough to fire, and the bias
update from its own counts. Rank 0 writes, per step, the largest difference over the ranks of: loss,
gradient norm, max logit per layer and expert counts; at the end, of the weights and routing biases and of
the loss of a held-out batch run forward only (the loop's validation); and how many heads QK-Clip clipped.
"""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.protocols import wrapped_stages
from openk2.optim import MuonClip
from openk2.train.balance import ExpertLoad, update_expert_bias_
from openk2.train.batch import IGNORE_INDEX, TokenBatch
from openk2.train.device import autocast_for
from openk2.train.loop import (
    build_optimizer,
    forward_backward,
    global_token_counts,
    split_from_outside,
)
from openk2.train.memory import apply_memory_policy
from openk2.train.recipe import ParallelSection, Recipe, RunSection
from openk2.train.world import World, join_world

STEPS, BATCH, SEQ, GRAD_ACCUM = 3, 4, 32, 2  # BATCH: sequences per rank and batch
LEARNING_RATE, GRAD_CLIP, BIAS_RATE, TAU = 1e-2, 1.0, 1e-3, 0.1  # τ: the initial max logit is ~0.14
# AdamW's first step moves an element by ~lr·g/(|g| + ε) whatever |g|: with ε = 1e-8 the float32 summation
# order (micro-batches, reduce-scatter) of lm_head and embedding elements with |g| ~ 1e-9 decides steps of
# up to lr (measured 7e-4); a larger ε keeps the comparison about the parallelism, not that amplification
ADAMW_EPS = 1e-4


def largest_over_ranks(value: float) -> float:
    reduced = torch.tensor(value, dtype=torch.float64)
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
    return reduced.item()


def recipe_of(layout: str) -> Recipe:
    fields = {key: value for key, value in (item.split("=") for item in layout.split(","))}
    memory = {switch: True for switch in fields.pop("memory", "").split("+") if switch}
    fields.pop("packed", None)
    parallel = ParallelSection(**{k: v if k == "schedule" else int(v) for k, v in fields.items()})
    return Recipe(
        memory=memory,
        run=RunSection(steps=STEPS),
        schedule={"warmup_steps": 0},
        optim={
            "lr": LEARNING_RATE,
            "grad_clip": GRAD_CLIP,
            "qk_clip_tau": TAU,
            "weight_decay": 0.1,
            "adamw_eps": ADAMW_EPS,
        },
        train={"batch_size": BATCH, "grad_accum": GRAD_ACCUM, "expert_bias_update_rate": BIAS_RATE},
        parallel=parallel,
    )


def global_batches(step: int, shards: int, vocab: int, packed: bool) -> list[TokenBatch]:
    """The step's GRAD_ACCUM global batches, each [shards · BATCH, SEQ]. Packed: SFT's rows, each two
    documents (positions restart, attention stays inside one) whose first 8 tokens are not trained on."""
    generator = torch.Generator().manual_seed(step)
    batches = []
    for _ in range(GRAD_ACCUM):
        ids = torch.randint(0, vocab, (shards * BATCH, SEQ), generator=generator)
        if not packed:
            batches.append(TokenBatch.of(ids))
            continue
        split = torch.randint(SEQ // 4, 3 * SEQ // 4, (shards * BATCH, 1), generator=generator)
        positions = torch.arange(SEQ).expand_as(ids)
        second = positions >= split
        position_ids = torch.where(second, positions - split, positions)
        labels = ids.masked_fill(position_ids < 8, IGNORE_INDEX)  # each document's prompt
        batches.append(TokenBatch(ids, labels, position_ids, second.long()))
    return batches


def shard_of(batch: TokenBatch, shard: int, shards: int) -> TokenBatch:
    """This data shard's rows of a global batch."""
    rows = [None if tensor is None else tensor.chunk(shards)[shard] for tensor in vars(batch).values()]
    return TokenBatch(*rows)


def run(layout: str) -> dict:
    recipe = recipe_of(layout)
    packed = "packed=1" in layout.split(",")
    world = join_world()
    torch.manual_seed(0)
    model = K2ForCausalLM(K2Config.preset("tiny"))
    reference = apply_memory_policy(copy.deepcopy(model), recipe.memory)  # FP8 storage rounds alike
    trained = split_from_outside(model, recipe, world)
    local, groups = trained.model, trained.groups
    optimizer = build_optimizer(local, recipe, groups.data)
    expert_load = ExpertLoad(local.moe_modules())
    autocast = autocast_for(torch.device("cpu"), torch.float32)
    shard, shards = world.data_shard(recipe.parallel.pp)

    # the copy: one process, QK-Clip over this rank alone, the whole global batch
    alone = [dist.new_group([rank]) for rank in range(world.world_size)][world.rank]
    reference_optimizer = MuonClip.from_model(
        reference,
        lr=LEARNING_RATE,
        qk_clip_tau=TAU,
        weight_decay=0.1,
        adamw_eps=ADAMW_EPS,
        process_group=alone,
    )
    reference_load = ExpertLoad(reference.moe_modules())
    one_process = World(rank=0, world_size=1)

    steps = []
    heads_clipped = reference_heads_clipped = 0
    for step in range(STEPS):
        batches = global_batches(step, shards, model.config.vocab_size, packed)
        micro_batches = [shard_of(batch, shard, shards) for batch in batches]
        _, predicted = global_token_counts(micro_batches, world, groups.data)
        losses = trained.forward_backward(
            micro_batches, autocast, expert_load, predicted / shards, torch.device("cpu")
        )
        update = trained.optimizer_step(optimizer, recipe, world, expert_load)
        loss = losses.clone()
        dist.all_reduce(loss)
        loss = loss[0].item() / groups.data_parallel

        expected_loss = forward_backward(reference, batches, autocast, reference_load)[0].item()
        squares = torch.stack([p.grad.double().square().sum() for p in reference.parameters()])
        expected_norm = squares.sum().sqrt()
        torch.nn.utils.clip_grads_with_norm_(reference.parameters(), GRAD_CLIP, expected_norm.float())
        reference_optimizer.step()
        reference_optimizer.zero_grad()
        expected_counts = reference_load.take_global(one_process)
        update_expert_bias_(reference.moe_modules(), expected_counts, BIAS_RATE)

        # the update reports the whole model on every rank: the stages' layers put together in model order
        stats, expected_stats = update.qk_clip, reference_optimizer.last_qk_clip_stats
        assert list(stats.max_logit_per_layer) == list(expected_stats.max_logit_per_layer)
        assert update.tokens_per_expert.shape == expected_counts.shape
        max_logit_difference = max(
            abs(value - expected_stats.max_logit_per_layer[name])
            for name, value in stats.max_logit_per_layer.items()
        )
        counts_difference = (update.tokens_per_expert - expected_counts).abs().max().item()
        heads_clipped += stats.heads_clipped
        reference_heads_clipped += expected_stats.heads_clipped
        record = {
            "loss": abs(loss - expected_loss),
            "grad_norm": abs(update.grad_norm - expected_norm.item()),
            "reference_grad_norm": expected_norm.item(),
            "max_logit": max_logit_difference,
            "expert_counts": counts_difference,
        }
        steps.append({key: largest_over_ranks(value) for key, value in record.items()})

    # a held-out batch, forward only (the loop's validation): Σ token losses and tokens, summed over ranks
    held_out = global_batches(STEPS, shards, model.config.vocab_size, packed)[0]
    totals = trained.pipeline.evaluate(shard_of(held_out, shard, shards))
    dist.all_reduce(totals)
    with torch.no_grad():
        expected_validation = reference(**held_out.model_inputs()).loss.item()
    validation = abs(totals[0].item() / totals[1].item() - expected_validation)

    reference_tensors = {**dict(reference.named_parameters()), **dict(reference.named_buffers())}
    weights = biases = 0.0
    own = {id(tensor) for tensor in [*local.parameters(), *local.buffers()]}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if id(tensor) not in own:
            continue  # another pipeline rank's layer (the same on every rank of one stage: full() below)
        whole = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
        difference = (whole.detach() - reference_tensors[name]).abs().max().item()
        if name.endswith("e_score_correction_bias"):
            biases = max(biases, difference)
        else:
            weights = max(weights, difference)
    # the stages' state dicts, put side by side, name every tensor of the unsplit model once
    names: list[list[str]] = [[] for _ in range(dist.get_world_size(groups.pipeline))]
    dist.all_gather_object(names, list(local.state_dict()), group=groups.pipeline)
    every_name = sorted(name for stage in names for name in stage)
    return {
        "state_dict_names_are_the_unsplit_models": every_name == sorted(reference.state_dict()),
        "steps": steps,
        "weights": largest_over_ranks(weights),
        "validation_loss": largest_over_ranks(validation),
        "biases": largest_over_ranks(biases),
        "heads_clipped": heads_clipped,
        "reference_heads_clipped": reference_heads_clipped,
        "expert_weight_type": type(model.model.layers[-1].mlp.experts).__name__,
        "stage_types": sorted({type(piece).__name__ for piece in trained.pipeline.slices}),
        "wrapped_stages": sorted({stage for module in local.modules() for stage in wrapped_stages(module)}),
        "layers_on_rank_0": sorted(  # rank 0 writes the results
            {
                int(name.split(".")[2])
                for name, p in model.named_parameters()
                if id(p) in own and ".layers." in name
            }
        ),
    }


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    results = {layout: run(layout) for layout in sys.argv[1].split(";")}
    if dist.get_rank() == 0:
        with open(sys.argv[2], "w") as f:
            json.dump(results, f)
    dist.barrier()
    os._exit(0)  # skip interpreter teardown (gloo threads, see distributed_training_steps.py)


if __name__ == "__main__":
    main()
