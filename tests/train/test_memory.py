"""Activation memory switches on the tiny K2 model, each against the unmodified model's forward and gradients."""

from __future__ import annotations

import copy
import gc
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.mla import MultiHeadLatentAttention
from openk2.model.moe import RoutedExperts, SwiGLUActivation
from openk2.train.memory import (
    ActivationMemory,
    SavedActivationLedger,
    apply_memory_policy,
    count_saved_activations,
)
from openk2.train.offload import offload, onload
from openk2.train.recipe import MemorySection
from openk2.train.recompute import StageRun, recompute_stage
from tests.numerics import relative_error

BATCH, SEQ = 2, 64
E4M3_UNIT_ROUNDOFF = 2.0**-4


@dataclass
class Run:
    loss: torch.Tensor
    hidden: torch.Tensor  # the decoder's final hidden states (the loss is fused with lm_head: no logits)
    grads: dict[str, torch.Tensor]
    tokens_per_expert: list[torch.Tensor]
    ledger: SavedActivationLedger


def _tiny(**overrides: object) -> K2ForCausalLM:
    torch.manual_seed(0)
    return K2ForCausalLM(K2Config(**{**K2Config.preset("tiny").model_dump(), **overrides}))


def _train_step(model: nn.Module, input_ids: torch.Tensor, autocast: bool = False) -> Run:
    final_hidden: list[torch.Tensor] = []
    hook = model.model.register_forward_hook(lambda _m, _i, out: final_hidden.append(out.detach()))
    with (
        count_saved_activations(model) as ledger,
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
    ):
        output = model(input_ids, labels=input_ids)
    output.loss.backward()
    hook.remove()
    return Run(
        output.loss.detach(),
        final_hidden[0],
        {name: p.grad.clone() for name, p in model.named_parameters()},
        [moe.tokens_per_expert.clone() for moe in model.moe_modules()],
        ledger,
    )


@pytest.fixture(scope="module")
def base() -> K2ForCausalLM:
    return _tiny()


@pytest.fixture(scope="module")
def input_ids(base: K2ForCausalLM) -> torch.Tensor:
    return torch.randint(0, base.config.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def plain(base: K2ForCausalLM, input_ids: torch.Tensor) -> Run:
    return _train_step(copy.deepcopy(base), input_ids)


def _with(base: K2ForCausalLM, input_ids: torch.Tensor, **switches: bool) -> Run:
    return _train_step(apply_memory_policy(copy.deepcopy(base), MemorySection(**switches)), input_ids)


def test_ledger_counts_saved_activations_once_and_never_weights():
    linear = nn.Linear(16, 8, bias=False)
    x = torch.randn(5, 16, requires_grad=True)
    with count_saved_activations(linear) as ledger:
        y = linear(x).exp()  # linear saves x and its weight; exp saves its output
        z = x * x  # saves x twice more: the same storage
    (y.sum() + z.sum()).backward()
    assert ledger.total_bytes == 4 * (5 * 16 + 5 * 8)


ALL_SWITCHES = [
    dict(recompute=True),
    dict(recompute_moe_down_proj=True),
    dict(fp8=True),
    dict(offload=True),
    dict(recompute=True, recompute_moe_down_proj=True, fp8=True, offload=True),
]


@pytest.mark.parametrize("switches", ALL_SWITCHES, ids=lambda s: "+".join(s))
def test_forward_is_bit_identical_and_router_counts_are_the_forwards(
    base: K2ForCausalLM, input_ids: torch.Tensor, plain: Run, switches: dict[str, bool]
):
    run = _with(base, input_ids, **switches)
    assert torch.equal(run.hidden, plain.hidden)
    assert torch.equal(run.loss, plain.loss)
    # read after backward: a recompute that reran a router would have overwritten or doubled these
    for counts, expected in zip(run.tokens_per_expert, plain.tokens_per_expert, strict=True):
        assert torch.equal(counts, expected)
        assert counts.sum().item() == BATCH * SEQ * base.config.num_experts_per_tok


def test_recompute_keeps_gradients_and_saves_less(base: K2ForCausalLM, input_ids: torch.Tensor, plain: Run):
    recompute = _with(base, input_ids, recompute=True)
    with_down = _with(base, input_ids, recompute=True, recompute_moe_down_proj=True)
    for run in (recompute, with_down):
        # only the RMSNorms are not bit-exact: their input's three gradient terms (residual, and two
        # inside the norm) are summed in another order, an fp32 rounding difference
        for name, expected in plain.grads.items():
            assert relative_error(run.grads[name], expected) <= 1e-6, name
    assert recompute.ledger.total_bytes < plain.ledger.total_bytes
    assert with_down.ledger.total_bytes < recompute.ledger.total_bytes
    assert recompute.ledger.tensors["recomputed"] > 0


@pytest.mark.parametrize(
    ("q_lora_rank", "autocast"), [(64, False), (None, False), (64, True)], ids=["q_lora", "q_proj", "bf16"]
)
def test_recomputed_swiglu_mla_and_down_projections_give_bit_identical_gradients(
    input_ids: torch.Tensor, q_lora_rank: int | None, autocast: bool
):
    """Also under bf16 autocast, which backward (and so the rerun) is outside of."""
    base = _tiny(q_lora_rank=q_lora_rank)
    plain = _train_step(copy.deepcopy(base), input_ids, autocast)
    model = copy.deepcopy(base)
    memory = ActivationMemory(model, offload=False)
    for module in list(model.modules()):
        if isinstance(module, SwiGLUActivation):
            recompute_stage(module, "forward", memory.recomputed)
        if isinstance(module, MultiHeadLatentAttention):
            recompute_stage(module, "up_projections", memory.recomputed)
        if isinstance(module, RoutedExperts):
            recompute_stage(module, "down_projection", memory.recomputed)
    model.register_forward_pre_hook(memory.enter)
    model.register_forward_hook(memory.exit, always_call=True)
    run = _train_step(model, input_ids, autocast)
    for name, expected in plain.grads.items():
        assert torch.equal(run.grads[name], expected), name
    assert run.ledger.total_bytes < plain.ledger.total_bytes


def test_fp8_storage_perturbs_gradients_only_within_e4m3_precision(
    base: K2ForCausalLM, input_ids: torch.Tensor, plain: Run
):
    """Each stored element errs by at most u = 2^-4 of itself; a gradient multiplies two stored factors
    (silu'(gate)·up, or the routed input by the output gradient), so to first order it errs by ≤ 2u."""
    for switches in (dict(fp8=True), dict(fp8=True, recompute=True, recompute_moe_down_proj=True)):
        run = _with(base, input_ids, **switches)
        for name, expected in plain.grads.items():
            assert relative_error(run.grads[name], expected) <= 2 * E4M3_UNIT_ROUNDOFF, name
        # the hooks really ran: the routed experts' weight gradients read FP8-stored activations
        assert not torch.equal(
            run.grads["model.layers.1.mlp.experts.up_proj"], plain.grads["model.layers.1.mlp.experts.up_proj"]
        )


def test_fp8_stores_exactly_the_moe_up_projection_and_swiglu_inputs(
    base: K2ForCausalLM, input_ids: torch.Tensor
):
    config, tokens = base.config, BATCH * SEQ
    slots = tokens * config.num_experts_per_tok

    def tiles(rows: int, width: int) -> int:  # one byte per element, one fp32 scale per 1×128 tile
        return rows * width + 4 * rows * -(-width // 128)

    moe_layer = (
        tiles(slots, config.hidden_size)  # dispatched tokens entering the routed gate/up GEMMs
        + 2 * tiles(slots, config.moe_intermediate_size)  # routed experts' gate and up
        + 2 * tiles(tokens, config.moe_intermediate_size * config.n_shared_experts)  # shared expert's
    )
    dense_layer = 2 * tiles(tokens, config.intermediate_size)
    n_moe = len(base.moe_modules())
    expected = n_moe * moe_layer + (config.num_hidden_layers - n_moe) * dense_layer
    for switches in (dict(fp8=True), dict(fp8=True, recompute=True)):
        assert _with(base, input_ids, **switches).ledger.bytes["fp8"] == expected


def test_offload_routes_every_saved_activation_and_keeps_gradients_exact(
    base: K2ForCausalLM, input_ids: torch.Tensor, plain: Run
):
    run = _with(base, input_ids, offload=True)
    for name, expected in plain.grads.items():
        assert torch.equal(run.grads[name], expected), name
    assert run.ledger.tensors["offloaded"] == plain.ledger.tensors["stored"]
    assert run.ledger.bytes["offloaded"] == plain.ledger.total_bytes
    everything = _with(base, input_ids, recompute=True, recompute_moe_down_proj=True, fp8=True, offload=True)
    assert set(everything.ledger.tensors) == {"offloaded", "recomputed"}


def test_fp8_storage_with_recompute_cuts_saved_bytes_by_40_percent(
    base: K2ForCausalLM, input_ids: torch.Tensor, plain: Run
):
    run = _with(base, input_ids, recompute=True, fp8=True)
    assert run.ledger.total_bytes <= 0.6 * plain.ledger.total_bytes


def test_nothing_outlives_the_graph(base: K2ForCausalLM, input_ids: torch.Tensor):
    """A cycle through an autograd node is never collected: forwards, with or without backward, leak nothing."""
    model = apply_memory_policy(
        copy.deepcopy(base),
        MemorySection(recompute=True, recompute_moe_down_proj=True, fp8=True, offload=True),
    )

    def live_tensors() -> int:
        gc.collect()
        return sum(isinstance(obj, torch.Tensor) for obj in gc.get_objects())

    model(input_ids, labels=input_ids).loss.backward()
    before = live_tensors()
    model(input_ids, labels=input_ids).loss.backward()
    with count_saved_activations(model):
        model(input_ids, labels=input_ids)  # a graph dropped without backward
    assert live_tensors() == before
    assert not [obj for obj in gc.get_objects() if isinstance(obj, StageRun)]


def test_generation_is_unchanged(base: K2ForCausalLM, input_ids: torch.Tensor):
    model = apply_memory_policy(copy.deepcopy(base), MemorySection(recompute=True, fp8=True, offload=True))
    prompt = input_ids[:, :8]
    assert torch.equal(model.generate(prompt, 6), base.generate(prompt, 6))


def test_offload_on_a_cpu_keeps_host_tensors_where_they_are():
    x = torch.randn(3, 5)
    offloaded = offload(x)
    assert offloaded.value.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    assert onload(offloaded) is offloaded.value
