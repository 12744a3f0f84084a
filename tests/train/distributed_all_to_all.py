"""Run by test_parallel.py: `torchrun --nproc-per-node 2 distributed_all_to_all.py RESULT_JSON` (gloo, CPU).

The expert-parallel dispatch and combine against the single-process `RoutedExperts` on routings that make
the all-to-all splits uneven or empty. Every rank builds the same global tokens, routing and experts; rank r
feeds its share of the tokens to `ExpertParallelExperts` (experts 8r..8r+7 of 16 on rank r) and the
reference gets all of them. The loss is a fixed random projection of the output, so every gradient is
distinct. Rank 0 writes, per case, the largest difference over both ranks of: output, token counts summed
over ranks, and the gradients of the tokens, the routing weights and the stacked expert weights; and the
error raised for experts whose GEMM stages were wrapped before expert parallelism.
"""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from openk2.model import K2Config
from openk2.model.moe import RoutedExperts
from openk2.model.protocols import wrap_stage
from openk2.train.expert_parallel import ExpertParallelExperts

TOKENS, HIDDEN_SEED = 12, 0


def routing(
    case: str, experts: int, top_k: int, generator: torch.Generator
) -> tuple[torch.Tensor, list[int]]:
    """(global expert indices [TOKENS, top_k], tokens per rank) for one case."""
    half = experts // 2

    def distinct(low: int, high: int) -> torch.Tensor:
        return torch.stack(
            [low + torch.randperm(high - low, generator=generator)[:top_k] for _ in range(TOKENS)]
        )

    if case == "all slots to rank 0's experts":  # rank 1 receives nothing; its experts see no token
        return distinct(0, half), [TOKENS // 2, TOKENS // 2]
    if case == "all slots to rank 1's experts, rank 0 mostly":  # uneven, and rank 1 sends only to itself
        return distinct(half, experts), [TOKENS - 2, 2]
    if case == "a rank without tokens":  # rank 0 sends nothing and gets all of rank 1's slots for its experts
        return distinct(0, experts), [0, TOKENS]
    if case == "random routing":
        return distinct(0, experts), [TOKENS // 2, TOKENS // 2]
    raise ValueError(case)


CASES = (
    "all slots to rank 0's experts",
    "all slots to rank 1's experts, rank 0 mostly",
    "a rank without tokens",
    "random routing",
)


def largest_over_ranks(value: float) -> float:
    reduced = torch.tensor(value, dtype=torch.float64)
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
    return reduced.item()


def run_case(case: str, ep_mesh, config: K2Config) -> dict[str, float]:
    rank = dist.get_rank()
    generator = torch.Generator().manual_seed(HIDDEN_SEED)
    reference = RoutedExperts(config)
    for weight in reference.parameters():
        weight.data.normal_(0.0, 0.05, generator=generator)
    experts = ExpertParallelExperts(copy.deepcopy(reference), ep_mesh)
    indices, tokens_per_rank = routing(case, config.n_routed_experts, config.num_experts_per_tok, generator)
    x = torch.randn(TOKENS, config.hidden_size, generator=generator)
    weights = torch.rand(TOKENS, config.num_experts_per_tok, generator=generator)
    probe = torch.randn(TOKENS, config.hidden_size, generator=generator)
    start = sum(tokens_per_rank[:rank])
    mine = slice(start, start + tokens_per_rank[rank])

    x_local = x[mine].clone().requires_grad_()
    weights_local = weights[mine].clone().requires_grad_()
    out, counts = experts(x_local, indices[mine], weights_local)
    (out * probe[mine]).sum().backward()

    x_all = x.clone().requires_grad_()
    weights_all = weights.clone().requires_grad_()
    expected_out, expected_counts = reference(x_all, indices, weights_all)
    (expected_out * probe).sum().backward()

    counts = counts.clone()
    dist.all_reduce(counts)
    expert_grads = max(
        (getattr(experts, name).grad.full_tensor() - getattr(reference, name).grad).abs().max().item()
        for name in ("gate_proj", "up_proj", "down_proj")
    )
    local_received = int(experts.gate_proj.grad.to_local().abs().sum().item() > 0)
    result = {
        "output": (out - expected_out[mine]).abs().max().item() if out.numel() else 0.0,
        "token_counts": (counts - expected_counts).abs().max().item(),
        "token_grads": (x_local.grad - x_all.grad[mine]).abs().max().item() if out.numel() else 0.0,
        "routing_weight_grads": (weights_local.grad - weights_all.grad[mine]).abs().max().item()
        if out.numel()
        else 0.0,
        "expert_grads": expert_grads,
        "reference_expert_grad_scale": reference.gate_proj.grad.abs().max().item(),
    }
    result = {name: largest_over_ranks(value) for name, value in result.items()}
    received = torch.zeros(dist.get_world_size())
    received[rank] = local_received
    dist.all_reduce(received)
    result["ranks_whose_experts_got_tokens"] = received.tolist()
    return result


def refusal(ep_mesh, config: K2Config) -> str:
    """The error for experts whose GEMM stages were already wrapped (which EP would silently drop)."""
    experts = RoutedExperts(config)
    wrap_stage(
        experts, "down_projection", lambda owner, stage, *inputs: stage(*inputs)
    )  # as memory policies do
    try:
        ExpertParallelExperts(experts, ep_mesh)
    except ValueError as error:
        return str(error)
    return ""


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    config = K2Config.preset("tiny")
    ep_mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("ep",))
    results = {"cases": {case: run_case(case, ep_mesh, config) for case in CASES}}
    results["wrapped_stage_refusal"] = refusal(ep_mesh, config)
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f)
    dist.barrier()
    # skip interpreter teardown: under load gloo's threads sometimes abort while being destroyed
    # ("terminate called without an active exception") after all results are written
    os._exit(0)


if __name__ == "__main__":
    main()
