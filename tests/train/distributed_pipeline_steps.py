"""Run by test_pipeline.py: `torchrun --nproc-per-node 2 distributed_pipeline_steps.py RESULT_JSON` (gloo).

For each schedule (1F1B: one stage per rank; Interleaved1F1B: two virtual stages per rank, one decoder
layer each), every rank builds the tiny K2 with the same seed and keeps an unsplit copy. For a few steps the
pipeline (train/pipeline.py, pp=2, 4 micro-batches) and the copy train on the same whole batch with
MuonClip, global-norm clipping, QK-Clip at a τ low enough to fire, and the expert-bias update. Rank 0
writes, per step, the largest difference over the ranks of: loss, gradients, gradient norm, max logit per
layer and expert counts; at the end, of the weights; and how many heads QK-Clip clipped.
"""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist

from openk2.model import K2Config, K2ForCausalLM
from openk2.optim import MuonClip, QKClip
from openk2.optim.param_groups import muon_param_groups
from openk2.train.balance import update_expert_bias_
from openk2.train.pipeline import build_pipeline

STEPS, BATCH, SEQ, MICROBATCHES = 3, 8, 32, 4
LEARNING_RATE, GRAD_CLIP, BIAS_RATE, TAU = 1e-2, 1.0, 1e-3, 0.1  # τ: the initial max logit is ~0.14


def largest_over_ranks(value: float) -> float:
    reduced = torch.tensor(value, dtype=torch.float64)
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
    return reduced.item()


def run(schedule: str, virtual_stages: int) -> dict:
    torch.manual_seed(0)
    model = K2ForCausalLM(K2Config.preset("tiny"))
    reference = copy.deepcopy(model)
    shape = (BATCH // MICROBATCHES, SEQ)
    pipeline = build_pipeline(model, dist.group.WORLD, schedule, MICROBATCHES, shape, virtual_stages)
    local = pipeline.modules()
    own = {id(p) for p in local.parameters()}
    names = {id(p): name for name, p in model.named_parameters()}
    module_names = {id(m): name for name, m in model.named_modules()}
    reference_names = {id(m): name for name, m in reference.named_modules()}
    # QK-Clip over this rank's layers only: the data-parallel group is this process alone
    alone = [dist.new_group([rank]) for rank in range(dist.get_world_size())][dist.get_rank()]
    qk_clip = QKClip(local, tau=TAU, process_group=alone)
    optimizer = MuonClip(muon_param_groups(local), qk_clip, lr=LEARNING_RATE)
    reference_optimizer = MuonClip.from_model(reference, lr=LEARNING_RATE, qk_clip_tau=TAU)
    reference_params = dict(reference.named_parameters())
    steps = []
    heads_clipped = reference_heads_clipped = 0
    largest_max_logit = float("-inf")
    for step in range(STEPS):
        tokens = torch.randint(
            0, model.config.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(step)
        )
        loss = pipeline.step(tokens, labels=tokens)
        # the unsplit copy, micro-batch by micro-batch like the pipeline (router counts per forward)
        expected_loss, expected_counts = 0.0, {}
        for micro_batch in tokens.chunk(MICROBATCHES):
            micro_loss = reference(micro_batch, labels=micro_batch).loss / MICROBATCHES
            micro_loss.backward()
            expected_loss += micro_loss.item()
            for moe in reference.moe_modules():
                name = reference_names[id(moe)]
                seen = expected_counts.get(name)
                counts = moe.tokens_per_expert.clone()
                expected_counts[name] = counts if seen is None else seen + counts
        record = {"loss": abs(loss - expected_loss) if loss is not None else 0.0}
        record["gradients"] = max(
            (p.grad - reference_params[names[id(p)]].grad).abs().max().item()
            for p in local.parameters()
            if id(p) in own
        )
        # the global norm: squares summed over this rank's parameters, then over the pipeline ranks
        squares = torch.stack([p.grad.double().square().sum() for p in local.parameters()]).sum()
        dist.all_reduce(squares)
        norm = squares.sqrt()
        expected_norm = (
            torch.stack([p.grad.double().square().sum() for p in reference.parameters()]).sum().sqrt()
        )
        record["grad_norm"] = abs(norm.item() - expected_norm.item())
        torch.nn.utils.clip_grads_with_norm_(local.parameters(), GRAD_CLIP, norm.float())
        torch.nn.utils.clip_grads_with_norm_(reference.parameters(), GRAD_CLIP, expected_norm.float())

        counts = {module_names[id(moe)]: total for moe, total in pipeline.expert_counts.items()}
        record["expert_counts"] = max(
            (counts[name] - expected_counts[name]).abs().max().item() for name in counts
        )
        for net_optimizer in (optimizer, reference_optimizer):
            net_optimizer.step()
            net_optimizer.zero_grad()
        stats, expected_stats = optimizer.last_qk_clip_stats, reference_optimizer.last_qk_clip_stats
        record["max_logit"] = max(
            abs(value - expected_stats.max_logit_per_layer[module_names[id(qk_clip.attention_modules[name])]])
            for name, value in stats.max_logit_per_layer.items()
        )
        heads_clipped += stats.heads_clipped
        largest_max_logit = max(largest_max_logit, *expected_stats.max_logit_per_layer.values())
        reference_heads_clipped += expected_stats.heads_clipped
        local_moes = list(pipeline.expert_counts)
        update_expert_bias_(local_moes, torch.stack(list(pipeline.expert_counts.values())), BIAS_RATE)
        every_moe = reference.moe_modules()
        every_count = torch.stack([expected_counts[reference_names[id(moe)]] for moe in every_moe])
        update_expert_bias_(every_moe, every_count, BIAS_RATE)
        steps.append({key: largest_over_ranks(value) for key, value in record.items()})

    weights = max(
        (p - reference_params[names[id(p)]]).abs().max().item() for p in local.parameters() if id(p) in own
    )
    clipped = torch.tensor(heads_clipped)
    dist.all_reduce(clipped)
    return {
        "steps": steps,
        "weights": largest_over_ranks(weights),
        "heads_clipped": clipped.item(),
        "reference_heads_clipped": reference_heads_clipped,
        "largest_max_logit": largest_max_logit,
        "layers_on_rank_0": sorted(
            {int(name.split(".")[2]) for name in map(names.get, own) if name and ".layers." in name}
        ),
    }


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    results = {"1F1B": run("1F1B", 1), "Interleaved1F1B": run("Interleaved1F1B", 2)}
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f)
    dist.barrier()
    os._exit(0)  # skip interpreter teardown (gloo threads, see distributed_training_steps.py)


if __name__ == "__main__":
    main()
