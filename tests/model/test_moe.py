"""MoE routing and expert computation against straightforward per-token references."""

import copy

import torch
import torch.nn.functional as F

from openk2.model import K2Config
from openk2.model.moe import MoE
from tests.numerics import FP32_EPS, assert_close_in_norm


def _moe(**overrides) -> MoE:
    config = K2Config(**{**K2Config.preset("tiny").model_dump(), **overrides})
    torch.manual_seed(0)
    moe = MoE(config)
    with torch.no_grad():
        for parameter in moe.parameters():
            parameter.normal_(0, 0.1)
        moe.gate.e_score_correction_bias.normal_(0, 0.1)
    return moe


def _per_token_reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Loop over tokens: sigmoid scores, biased choice, unbiased weights, each chosen expert run alone."""
    config_bias = moe.gate.e_score_correction_bias
    out = torch.zeros_like(x)
    for t, token in enumerate(x):
        scores = torch.sigmoid(moe.gate.weight @ token)
        chosen = sorted(range(len(scores)), key=lambda e: -(scores[e] + config_bias[e]).item())[
            : moe.gate.top_k
        ]
        weights = scores[chosen]
        if moe.gate.norm_topk_prob:
            weights = weights / weights.sum()
        weights = weights * moe.gate.routed_scaling_factor
        for weight, e in zip(weights, chosen, strict=True):
            hidden = F.silu(moe.experts.gate_proj[e] @ token) * (moe.experts.up_proj[e] @ token)
            out[t] += weight * (moe.experts.down_proj[e] @ hidden)
        out[t] += moe.shared_experts(token)
    return out


def _in_float64(moe: MoE) -> MoE:
    """The same layer in float64: the per-token loop on it is the reference both fp32 paths are held to."""
    reference = copy.deepcopy(moe).double()
    reference.gate.e_score_correction_bias.data = moe.gate.e_score_correction_bias.double()
    return reference


def test_sorted_grouped_experts_equal_per_token_loop():
    moe = _moe()
    x = torch.randn(37, moe.gate.weight.shape[1])
    with torch.no_grad():
        grouped = moe(x[None])[0]
        loop = _per_token_reference(moe, x)
        exact = _per_token_reference(_in_float64(moe), x.double())
    # both fp32 paths lie within a few roundings (FP32_EPS ≈ 1.2e-7) of the float64 result, in norm
    assert_close_in_norm(grouped, exact, 30 * FP32_EPS, "grouped GEMMs")
    assert_close_in_norm(loop, exact, 30 * FP32_EPS, "per-token loop")
    assert moe.tokens_per_expert.sum().item() == 37 * moe.gate.top_k


def test_gradients_of_stacked_experts_match_per_token_loop():
    moe = _moe(norm_topk_prob=False)
    x = torch.randn(19, moe.gate.weight.shape[1])
    moe(x[None]).pow(2).sum().backward()
    grouped = [p.grad.clone() for p in (moe.experts.gate_proj, moe.experts.down_proj, moe.gate.weight)]
    exact_moe = _in_float64(moe)
    _per_token_reference(exact_moe, x.double()).pow(2).sum().backward()
    exact = [exact_moe.experts.gate_proj.grad, exact_moe.experts.down_proj.grad, exact_moe.gate.weight.grad]
    for name, actual, expected in zip(("gate_proj", "down_proj", "router"), grouped, exact, strict=True):
        assert_close_in_norm(actual, expected, 30 * FP32_EPS, name)


def test_correction_bias_changes_selection_but_not_mixing_weights():
    moe = _moe()
    x = torch.randn(64, moe.gate.weight.shape[1])
    with torch.no_grad():
        moe.gate.e_score_correction_bias.zero_()
        moe.gate.e_score_correction_bias[3] = 10.0  # expert 3 wins every selection
        weights, indices, _ = moe.gate(x)
    assert (indices == 3).any(dim=-1).all()
    scores = torch.sigmoid(x @ moe.gate.weight.T)
    picked = scores.gather(1, indices)
    torch.testing.assert_close(
        weights, picked / picked.sum(-1, keepdim=True) * moe.gate.routed_scaling_factor
    )


def test_group_limited_routing_only_picks_from_best_groups():
    moe = _moe(n_routed_experts=16, n_group=4, topk_group=2, num_experts_per_tok=4)
    x = torch.randn(50, moe.gate.weight.shape[1])
    with torch.no_grad():
        _, indices, _ = moe.gate(x)
        biased = torch.sigmoid(x @ moe.gate.weight.T) + moe.gate.e_score_correction_bias
    for token_scores, chosen in zip(biased, indices, strict=True):
        group_scores = token_scores.view(4, 4).topk(2, dim=-1).values.sum(-1)
        allowed = set(group_scores.topk(2).indices.tolist())
        allowed_experts = token_scores.view(4, 4).clone()
        allowed_experts[[g for g in range(4) if g not in allowed]] = float("-inf")
        assert set(chosen.tolist()) == set(allowed_experts.flatten().topk(4).indices.tolist())


def test_sequence_balance_loss_is_one_when_balanced_and_larger_when_collapsed():
    from openk2.model.moe import sequence_balance_loss

    experts, top_k, seq = 8, 2, 16
    uniform_scores = torch.full((1, seq, experts), 0.5)
    # every expert chosen equally often: f_i = 1 and P_i = 1/E, so Σ f_i P_i = 1
    balanced = torch.arange(seq * top_k).view(1, seq, top_k) % experts
    assert torch.isclose(sequence_balance_loss(uniform_scores, balanced), torch.tensor(1.0))
    # every token picks experts 0 and 1 while scores favour them: f = E/k on two experts
    peaked = uniform_scores.clone()
    peaked[..., :2] = 4.0
    collapsed = torch.tensor([0, 1]).expand(1, seq, 2)
    expected = 2 * (experts / top_k) * (4.0 / (8 + 6 * 0.5))
    assert torch.isclose(sequence_balance_loss(peaked, collapsed), torch.tensor(expected))


def test_aux_loss_is_added_in_training_only_and_scaled_by_alpha():
    from openk2.model import K2ForCausalLM

    config = K2Config(**{**K2Config.preset("tiny").model_dump(), "aux_loss_alpha": 0.01})
    torch.manual_seed(0)
    model = K2ForCausalLM(config)
    tokens = torch.randint(0, config.vocab_size, (2, 16))
    train_out = model.train()(tokens, labels=tokens)
    eval_out = model.eval()(tokens, labels=tokens)
    assert eval_out.aux_loss is None
    assert train_out.aux_loss is not None and 0.01 * 3 * 0.9 < train_out.aux_loss < 0.01 * 3 * 4
    torch.testing.assert_close(train_out.loss - train_out.aux_loss, eval_out.loss)
