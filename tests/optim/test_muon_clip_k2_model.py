"""MuonClip on the real K2 model (tiny preset): role-based groups and QK-Clip's guarantee on MLA (K2 report §2.1)."""

import math

import pytest
import torch

from openk2.model import K2Config, K2ForCausalLM
from openk2.optim import MuonClip, muon_param_groups

HOT_LAYER, HOT_HEADS = 3, (0, 2)  # the last layer: clipping it leaves every clipped layer's input unchanged


def _tiny_model() -> K2ForCausalLM:
    torch.manual_seed(0)
    return K2ForCausalLM(K2Config.preset("tiny"))


def test_k2_parameters_are_grouped_by_role():
    model = _tiny_model()
    groups = {group["use_muon"]: group["params"] for group in muon_param_groups(model)}
    name_of = {id(p): name for name, p in model.named_parameters()}
    muon_names = {name_of[id(p)] for p in groups[True]}
    adamw_names = {name_of[id(p)] for p in groups[False]}
    for name, _ in model.named_parameters():
        hidden_matrix = name.startswith("model.layers.") and "layernorm" not in name
        assert (name in muon_names) == hidden_matrix, name
        assert (name in adamw_names) != hidden_matrix, name
    assert "model.layers.1.mlp.experts.gate_proj" in muon_names  # stacked [E, I, H]: E Muon matrices
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= adamw_names
    all_params = {id(p) for p in groups[True] + groups[False]}
    assert id(model.model.layers[1].mlp.gate.e_score_correction_bias) not in all_params


def _record_max_logits(model: K2ForCausalLM, tokens: torch.Tensor) -> list[torch.Tensor]:
    attention = model.attention_modules()
    for module in attention:
        module.record_max_logit = True
    with torch.no_grad():
        model(tokens)
    return [module.max_logit_per_head.clone() for module in attention]


def test_mla_heads_above_tau_are_clipped_to_tau_and_nothing_else_changes():
    model = _tiny_model()
    config = model.config
    nope, rope, v_dim = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
    attention = model.model.layers[HOT_LAYER].self_attn
    with torch.no_grad():  # push two heads' logits far above the others
        q_heads = attention.q_b_proj.weight.view(config.num_attention_heads, nope + rope, -1)
        kv_heads = attention.kv_b_proj.weight.view(config.num_attention_heads, nope + v_dim, -1)
        for head in HOT_HEADS:
            q_heads[head] *= 40.0
            kv_heads[head, :nope] *= 40.0
    tokens = torch.randint(0, config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(1))
    before = _record_max_logits(model, tokens)
    hot = [before[HOT_LAYER][h].item() for h in HOT_HEADS]
    cold = max(
        s[h].item() for i, s in enumerate(before) for h in range(4) if i != HOT_LAYER or h not in HOT_HEADS
    )
    assert min(hot) > 4 * cold
    tau = math.sqrt(min(hot) * cold)
    weights_before = {name: t.clone() for name, t in model.state_dict().items()}

    optimizer = MuonClip.from_model(model, lr=0.0, weight_decay=0.1, qk_clip_tau=tau)
    model(tokens, labels=tokens).loss.backward()
    optimizer.step()

    after = _record_max_logits(model, tokens)
    for head in HOT_HEADS:
        assert after[HOT_LAYER][head].item() <= tau * (1 + 1e-5)
        assert after[HOT_LAYER][head].item() == pytest.approx(tau, rel=1e-5)
    stats = optimizer.last_qk_clip_stats
    assert (stats.heads_clipped, stats.heads_total) == (2, 4 * config.num_hidden_layers)
    assert stats.max_logit_per_layer[f"model.layers.{HOT_LAYER}.self_attn"] == pytest.approx(
        max(hot), rel=1e-6
    )

    prefix = f"model.layers.{HOT_LAYER}.self_attn."
    changed = {prefix + "q_b_proj.weight", prefix + "kv_b_proj.weight"}
    for name, weight in model.state_dict().items():
        if name not in changed:  # incl. kv_a_proj_with_mqa (shared rotary key), q_a_proj, o_proj, norms, MoE
            assert torch.equal(weight, weights_before[name]), name
    q_new = model.state_dict()[prefix + "q_b_proj.weight"].view(4, nope + rope, -1)
    q_old = weights_before[prefix + "q_b_proj.weight"].view(4, nope + rope, -1)
    kv_new = model.state_dict()[prefix + "kv_b_proj.weight"].view(4, nope + v_dim, -1)
    kv_old = weights_before[prefix + "kv_b_proj.weight"].view(4, nope + v_dim, -1)
    for head in range(4):
        if head in HOT_HEADS:
            gamma = tau / before[HOT_LAYER][head].item()
            torch.testing.assert_close(
                q_new[head, :nope], q_old[head, :nope] * math.sqrt(gamma), rtol=1e-6, atol=0
            )
            torch.testing.assert_close(q_new[head, nope:], q_old[head, nope:] * gamma, rtol=1e-6, atol=0)
            torch.testing.assert_close(
                kv_new[head, :nope], kv_old[head, :nope] * math.sqrt(gamma), rtol=1e-6, atol=0
            )
            assert torch.equal(kv_new[head, nope:], kv_old[head, nope:]), "v rows must stay"
        else:
            assert torch.equal(q_new[head], q_old[head]) and torch.equal(kv_new[head], kv_old[head]), head
