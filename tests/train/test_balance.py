"""Auxiliary-loss-free balancing: the DeepSeek-V3 bias rule, load counted once per training forward."""

from __future__ import annotations

import pytest
import torch

from openk2.model import K2Config, K2ForCausalLM
from openk2.optim import MuonClip
from openk2.train.balance import ExpertLoad, expert_bias_range, update_expert_bias_
from openk2.train.memory import apply_memory_policy, count_saved_activations
from openk2.train.recipe import MemorySection
from openk2.train.world import World
from tests.train.small_run import SMALL_MODEL

SINGLE = World(rank=0, world_size=1)


def _model() -> K2ForCausalLM:
    torch.manual_seed(0)
    return K2ForCausalLM(K2Config.preset("tiny").model_copy(update=dict(num_hidden_layers=3)))


def test_overloaded_experts_move_down_and_underloaded_up_by_exactly_u() -> None:
    model = _model()
    moe_modules = model.moe_modules()
    start = torch.linspace(-0.5, 0.5, 16)
    for moe in moe_modules:
        moe.gate.e_score_correction_bias.copy_(start)
    # layer 0: mean 4; experts 0-1 overloaded, 2-12 exactly balanced, 13-15 underloaded; layer 1 mirrored
    layer_load = torch.tensor([12, 8] + [4] * 11 + [0, 0, 0])
    load = torch.stack([layer_load, layer_load.flip(0)])
    u = 0.125  # a power of two: the expected sums are exact in fp32
    update_expert_bias_(moe_modules, load, u)
    step = torch.tensor([-u, -u] + [0.0] * 11 + [u, u, u])
    assert torch.equal(moe_modules[0].gate.e_score_correction_bias, start + step)
    assert torch.equal(moe_modules[1].gate.e_score_correction_bias, start + step.flip(0))
    assert all(moe.gate.e_score_correction_bias.dtype == torch.float32 for moe in moe_modules)


@pytest.mark.parametrize(
    "memory",
    [MemorySection(), MemorySection(recompute=True, recompute_moe_down_proj=True)],
    ids=["plain", "recompute"],
)
def test_load_is_summed_over_micro_batch_forwards_and_counted_once_each(memory: MemorySection) -> None:
    """As the loop does: count after each forward, then backward, which under recompute reruns the RMSNorms,
    SwiGLUs, MLA up-projections and expert down-projections, but must never rerun a router."""
    model = apply_memory_policy(_model(), memory)
    router_runs = [0]
    for moe in model.moe_modules():
        moe.gate.register_forward_hook(lambda *_: router_runs.__setitem__(0, router_runs[0] + 1))
    routing = _model()  # the same weights without a memory policy: the counts each forward must give
    moe_modules = model.moe_modules()
    expert_load = ExpertLoad(moe_modules)
    tokens = torch.randint(0, 8000, (2, 24), generator=torch.Generator().manual_seed(0))
    expected = []
    for micro_batch in tokens.split(1):
        with torch.no_grad():
            routing(micro_batch)
        expected.append(torch.stack([moe.tokens_per_expert for moe in routing.moe_modules()]))
        with count_saved_activations(model) as ledger:
            output = model(micro_batch, labels=micro_batch)
        expert_load.add_last_forward()
        output.loss.backward()
        assert (ledger.tensors["recomputed"] > 0) == memory.recompute  # backward really reran stages
        assert torch.equal(torch.stack([moe.tokens_per_expert for moe in moe_modules]), expected[-1])
    assert router_runs[0] == len(expected) * len(moe_modules)
    counts = expert_load.take_global(SINGLE)
    assert torch.equal(counts, expected[0] + expected[1])
    top_k = model.config.num_experts_per_tok
    assert counts.sum(dim=-1).tolist() == [tokens.numel() * top_k] * len(moe_modules)
    assert expert_load.tokens_per_expert is None  # the next step starts from zero


def test_bias_is_a_buffer_the_optimizer_never_moves() -> None:
    model = K2ForCausalLM(K2Config(**SMALL_MODEL))
    bias = model.moe_modules()[0].gate.e_score_correction_bias
    bias.copy_(torch.linspace(-1, 1, bias.numel()))
    before = bias.clone()
    optimizer = MuonClip.from_model(model, lr=1e-2, weight_decay=0.5)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(bias) not in optimized and not bias.requires_grad
    tokens = torch.randint(0, 700, (2, 16), generator=torch.Generator().manual_seed(1))
    model(tokens, labels=tokens).loss.backward()
    optimizer.step()
    assert torch.equal(bias, before)
    assert expert_bias_range(model.moe_modules()) == ([-1.0], [1.0])
