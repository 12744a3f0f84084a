"""MLA's QK-Clip hooks: the recorded per-head max logit, and qk_clip_ scaling exactly the right rows."""

import pytest
import torch
from transformers import AttentionInterface
from transformers.models.deepseek_v3.modeling_deepseek_v3 import eager_attention_forward

from openk2.model import K2ForCausalLM, mla
from tests.model.hf_reference import build_reference
from tests.numerics import FP32_EPS, assert_close_in_norm

captured_max_logits: list[torch.Tensor] = []


def _eager_attention_recording_max_logit(module, query, key, value, attention_mask, scaling, **kwargs):
    """transformers' eager attention, plus the max over causally visible (i, j) of the scaled logits per head.

    A custom implementation gets transformers' mask in an unspecified format, so the causal mask is built here.
    """
    logits = (query @ key.transpose(-1, -2)) * scaling  # [batch, heads, q, k]
    visible = torch.ones(logits.shape[-2:], dtype=torch.bool).tril()
    captured_max_logits.append(logits.masked_fill(~visible, float("-inf")).amax(dim=(0, 2, 3)))
    causal_mask = torch.zeros(visible.shape).masked_fill(~visible, float("-inf"))[None, None]
    return eager_attention_forward(module, query, key, value, causal_mask, scaling, **kwargs)


AttentionInterface.register("record_max_logit", _eager_attention_recording_max_logit)


def _pair(tmp_path, variant="k2-like"):
    reference = build_reference(variant)
    reference.save_pretrained(tmp_path)
    reference.set_attn_implementation("record_max_logit")
    return reference, K2ForCausalLM.from_pretrained(tmp_path).eval()


def test_max_logit_per_head_matches_reference_logits(tmp_path):
    reference, ours = _pair(tmp_path, "k2-yarn")
    input_ids = torch.randint(0, ours.config.vocab_size, (3, 24))
    for attention in ours.attention_modules():
        attention.record_max_logit = True
    captured_max_logits.clear()
    with torch.no_grad():
        assert_close_in_norm(ours(input_ids).logits, reference(input_ids).logits, 30 * FP32_EPS, "logits")
    assert len(captured_max_logits) == ours.config.num_hidden_layers
    for attention, expected in zip(ours.attention_modules(), captured_max_logits, strict=True):
        assert attention.max_logit_per_head.shape == (ours.config.num_attention_heads,)
        assert_close_in_norm(attention.max_logit_per_head, expected, 30 * FP32_EPS, "max logits")


def test_max_logit_is_none_while_recording_is_off(tmp_path):
    _, ours = _pair(tmp_path)
    attention = ours.attention_modules()[0]
    attention.record_max_logit = True
    ours(torch.randint(0, 100, (1, 8)))
    assert attention.max_logit_per_head is not None
    attention.record_max_logit = False
    ours(torch.randint(0, 100, (1, 8)))
    assert attention.max_logit_per_head is None


def test_qk_clip_scales_each_clipped_heads_logits_by_gamma_and_touches_nothing_else(tmp_path):
    _, ours = _pair(tmp_path)
    attention = ours.attention_modules()[1]
    attention.record_max_logit = True
    input_ids = torch.randint(0, ours.config.vocab_size, (2, 16))
    with torch.no_grad():
        ours(input_ids)
    before_logits = attention.max_logit_per_head.clone()
    before = {name: p.detach().clone() for name, p in ours.named_parameters()}
    gamma = torch.tensor([0.25, 1.0, 0.5, 1.0])
    attention.qk_clip_(gamma)

    nope, rope = attention.qk_nope_head_dim, attention.qk_rope_head_dim
    q_rows = before["model.layers.1.self_attn.q_b_proj.weight"].view(4, nope + rope, -1)
    kv_rows = before["model.layers.1.self_attn.kv_b_proj.weight"].view(4, nope + attention.v_head_dim, -1)
    expected_q = q_rows.clone()
    expected_kv = kv_rows.clone()
    for head, g in enumerate(gamma.tolist()):
        if g < 1:
            expected_q[head, :nope] *= g**0.5
            expected_q[head, nope:] *= g
            expected_kv[head, :nope] *= g**0.5
    after = dict(ours.named_parameters())
    torch.testing.assert_close(after["model.layers.1.self_attn.q_b_proj.weight"].view_as(q_rows), expected_q)
    torch.testing.assert_close(
        after["model.layers.1.self_attn.kv_b_proj.weight"].view_as(kv_rows), expected_kv
    )
    for name, tensor in before.items():
        if name not in (
            "model.layers.1.self_attn.q_b_proj.weight",
            "model.layers.1.self_attn.kv_b_proj.weight",
        ):
            assert torch.equal(after[name], tensor), name
    # unclipped heads' rows and all v rows are bit-identical
    q_after = after["model.layers.1.self_attn.q_b_proj.weight"].view_as(q_rows)
    kv_after = after["model.layers.1.self_attn.kv_b_proj.weight"].view_as(kv_rows)
    assert torch.equal(q_after[[1, 3]], q_rows[[1, 3]]) and torch.equal(kv_after[:, nope:], kv_rows[:, nope:])

    # logits are bilinear in the clipped rows: every logit of head h, hence its max, scales by exactly gamma_h
    with torch.no_grad():
        ours(input_ids)
    assert_close_in_norm(attention.max_logit_per_head, before_logits * gamma, 30 * FP32_EPS, "clipped")


@pytest.mark.parametrize("chunk_elements", [1, 4 * 5 * 19, 2**24])
def test_chunked_max_logit_equals_the_whole_logit_matrix_in_float64(monkeypatch, chunk_elements):
    """Blocks of queries against only the keys they can see: the same S_max as the whole [heads, q, k] matrix
    (one query per block, several blocks, one block), causal and with a left-padding mask."""
    monkeypatch.setattr(mla, "MAX_LOGIT_CHUNK_ELEMENTS", chunk_elements)
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 4, 19, 8, generator=generator)
    key = torch.randn(2, 4, 19, 8, generator=generator)
    causal = torch.ones(19, 19, dtype=torch.bool).tril()
    padded = causal[None].repeat(2, 1, 1)
    padded[1, :, :6] = False  # row 1's first 6 slots are padding: no query sees them
    padded[1, :6, :6] |= torch.eye(6, dtype=torch.bool)  # a padding query sees only itself
    for visible in (None, padded):
        mask = causal[None] if visible is None else visible
        whole = (query.double() @ key.double().transpose(-1, -2)) * 0.3
        expected = whole.masked_fill(~mask[:, None], float("-inf")).amax(dim=(0, 2, 3))
        actual = mla.causal_max_logit_per_head(query, key, 0.3, visible)
        assert_close_in_norm(actual.double(), expected, 10 * FP32_EPS, "S_max")
