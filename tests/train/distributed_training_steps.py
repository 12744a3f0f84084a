"""Run by test_parallel.py: `torchrun --nproc-per-node N distributed_training_steps.py EP[,EP...] [LAYOUTS]
RESULT_JSON` (gloo); one run per expert-parallel degree, in one launch, results keyed by the degree. LAYOUTS:
pipeline layouts run by distributed_pipeline_steps.py in the same launch (a launch costs more than the
steps), results keyed by the layout.

Every rank builds the tiny K2 model with the same seed and keeps an unparallelized copy of it. For a few
steps the model parallelized with [parallel] dp=N, ep=EP trains on this rank's 1/N of each global batch
and the copy on the whole batch, both with MuonClip and global-norm clipping, and both move their router
bias from the step's global expert load. Rank 0 writes, per step, the largest difference over all ranks
of: logits, loss, gradients (routed experts and the rest), gradient norm and expert counts; and at the end
the largest difference of the gathered full state dict from the copy's.
"""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor

from openk2.model import K2Config, K2ForCausalLM
from openk2.optim import MuonClip
from openk2.train.balance import update_expert_bias_
from openk2.train.parallel import clip_grad_norm_, parallelize
from openk2.train.recipe import ParallelSection

STEPS, BATCH, SEQ = 3, 4, 32
LEARNING_RATE, GRAD_CLIP, BIAS_RATE = 1e-3, 1.0, 1e-3


def full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def largest_over_ranks(value: float) -> float:
    reduced = torch.tensor(value, dtype=torch.float64)
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
    return reduced.item()


def expert_counts(model: K2ForCausalLM) -> torch.Tensor:
    """[moe layers, experts] routed slots of the last forward."""
    return torch.stack([moe.tokens_per_expert for moe in model.moe_modules()])


def gradient_differences(model: K2ForCausalLM, reference: K2ForCausalLM) -> dict[str, float]:
    reference_params = dict(reference.named_parameters())
    largest = {"experts": 0.0, "rest": 0.0, "reference_scale": 0.0}
    for name, param in model.named_parameters():  # the same order on every rank: full() is collective
        expected = reference_params[name].grad
        kind = "experts" if ".mlp.experts." in name else "rest"
        largest[kind] = max(largest[kind], (full(param.grad) - expected).abs().max().item())
        largest["reference_scale"] = max(largest["reference_scale"], expected.abs().max().item())
    return largest


def run(expert_parallel: int) -> dict:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = K2ForCausalLM(K2Config.preset("tiny"))
    reference = copy.deepcopy(model)
    parallelize(model, ParallelSection(dp=world, ep=expert_parallel))
    optimizer = MuonClip.from_model(model, lr=LEARNING_RATE)
    reference_optimizer = MuonClip.from_model(reference, lr=LEARNING_RATE)
    steps = []
    for step in range(STEPS):
        tokens = torch.randint(
            0, model.config.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(step)
        )
        local = tokens.chunk(world)[rank]
        with torch.no_grad():  # with labels the loss is fused with lm_head and returns no logits
            logits_difference = (
                (model(local).logits - reference(tokens).logits.chunk(world)[rank]).abs().max()
            )
        output = model(local, labels=local)
        expected = reference(tokens, labels=tokens)
        output.loss.backward()
        expected.loss.backward()

        loss = output.loss.detach().clone()
        dist.all_reduce(loss)
        counts = expert_counts(model).clone()
        dist.all_reduce(counts)
        expected_counts = expert_counts(reference)
        record = {
            "logits": logits_difference.item(),
            "loss": abs(loss.item() / world - expected.loss.item()),
            "expert_counts": (counts - expected_counts).abs().max().item(),
            "gradients": gradient_differences(model, reference),
        }
        norm = clip_grad_norm_(model.parameters(), GRAD_CLIP)
        # in fp64: torch's own fp32 vector_norm is off by ~1e-5 (relative) on the 8192-row embedding
        expected_norm = (
            torch.stack([p.grad.double().square().sum() for p in reference.parameters()]).sum().sqrt()
        )
        torch.nn.utils.clip_grads_with_norm_(reference.parameters(), GRAD_CLIP, expected_norm.float())
        record["grad_norm"] = abs(norm.item() - expected_norm.item())
        record["reference_grad_norm"] = expected_norm.item()
        for net, net_optimizer, net_counts in (
            (model, optimizer, counts),
            (reference, reference_optimizer, expected_counts),
        ):
            net_optimizer.step()
            net_optimizer.zero_grad()
            update_expert_bias_(net.moe_modules(), net_counts, BIAS_RATE)
        steps.append(
            {
                key: {k: largest_over_ranks(v) for k, v in value.items()}
                if isinstance(value, dict)
                else largest_over_ranks(value)
                for key, value in record.items()
            }
        )

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    expected_state = reference.state_dict()
    return {
        "steps": steps,
        "state_dict_keys_match": sorted(state) == sorted(expected_state),
        "state_dict": largest_over_ranks(
            max((state[name] - expected_state[name]).abs().max().item() for name in expected_state)
        ),
        "expert_weight_type": type(model.model.layers[-1].mlp.experts).__name__,
    }


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    results = {degree: run(int(degree)) for degree in sys.argv[1].split(",")}
    if len(sys.argv) == 4:
        from distributed_pipeline_steps import run as run_pipeline  # this script's directory is on sys.path

        results |= {layout: run_pipeline(layout) for layout in sys.argv[2].split(";")}
    if dist.get_rank() == 0:
        with open(sys.argv[-1], "w") as f:
            json.dump(results, f)
    dist.barrier()
    # skip interpreter teardown: under load gloo's threads sometimes abort while being destroyed
    # ("terminate called without an active exception") after all results are written
    os._exit(0)


if __name__ == "__main__":
    main()
