"""Packing keeps attention inside each conversation: a packed row computes what each conversation computes alone.

The reference is the model's ordinary causal forward on one conversation at a time (positions from 0, no
document mask). In float64 (dense layers: grouped GEMMs have no float64 kernel) only summation order can differ;
with MoE layers in float32 the bound is norm-relative.
"""

from __future__ import annotations

import pytest
import torch

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.mla import LatentCache
from openk2.train.batch import PADDING_DOCUMENT

CONFIG = K2Config(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    moe_intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    q_lora_rank=32,
    kv_lora_rank=32,
    qk_nope_head_dim=16,
    qk_rope_head_dim=8,
    v_head_dim=16,
    max_position_embeddings=256,
    rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=64, mscale_all_dim=1.0),
    n_routed_experts=8,
    num_experts_per_tok=2,
)
LENGTHS = (9, 14, 5)  # three conversations, then 4 padding tokens
ROW = 32


def _packed_row(conversations: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    input_ids = torch.zeros(1, ROW, dtype=torch.long)
    position_ids = torch.zeros(1, ROW, dtype=torch.long)
    document_ids = torch.full((1, ROW), PADDING_DOCUMENT)
    start = 0
    for document, ids in enumerate(conversations):
        end = start + len(ids)
        input_ids[0, start:end] = ids
        position_ids[0, start:end] = torch.arange(len(ids))
        document_ids[0, start:end] = document
        start = end
    return input_ids, position_ids, document_ids


def _conversations() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, CONFIG.vocab_size, (n,), generator=generator) for n in LENGTHS]


@pytest.fixture(scope="module")
def model_and_conversations() -> tuple[K2ForCausalLM, list[torch.Tensor]]:
    torch.manual_seed(0)
    return K2ForCausalLM(CONFIG).eval(), _conversations()


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


@torch.no_grad()
@pytest.mark.parametrize(
    ("dtype", "overrides", "bound"),
    [(torch.float64, {"first_k_dense_replace": 2}, 1e-12), (torch.float32, {}, 1e-5)],
    ids=["float64-dense", "float32-moe"],
)
def test_packed_logits_equal_each_conversation_alone(
    dtype: torch.dtype, overrides: dict[str, int], bound: float
) -> None:
    torch.manual_seed(0)
    model = K2ForCausalLM(CONFIG.model_copy(update=overrides)).to(dtype).eval()
    conversations = _conversations()
    input_ids, position_ids, document_ids = _packed_row(conversations)
    packed = model(input_ids, position_ids=position_ids, document_ids=document_ids).logits[0]
    start = 0
    for ids in conversations:
        alone = model(ids[None]).logits[0]
        assert _relative_error(packed[start : start + len(ids)], alone) < bound
        start += len(ids)


@torch.no_grad()
def test_without_the_document_mask_later_conversations_see_earlier_ones(model_and_conversations) -> None:
    model, conversations = model_and_conversations
    input_ids, position_ids, _ = _packed_row(conversations)
    leaky = model(input_ids, position_ids=position_ids).logits[0]
    second = slice(LENGTHS[0], LENGTHS[0] + LENGTHS[1])
    assert _relative_error(leaky[second], model(conversations[1][None]).logits[0]) > 1e-2


@torch.no_grad()
def test_qk_clip_sees_only_the_logits_inside_each_conversation(model_and_conversations) -> None:
    model, conversations = model_and_conversations
    attention = model.attention_modules()
    for module in attention:
        module.record_max_logit = True
    try:
        input_ids, position_ids, document_ids = _packed_row(conversations)
        model(input_ids, position_ids=position_ids, document_ids=document_ids)
        packed = [module.max_logit_per_head.clone() for module in attention]
        alone = []
        for ids in conversations:
            model(ids[None])
            alone.append([module.max_logit_per_head.clone() for module in attention])
    finally:
        for module in attention:
            module.record_max_logit = False
    for layer, packed_max in enumerate(packed):
        expected = torch.stack([per_conversation[layer] for per_conversation in alone]).amax(dim=0)
        torch.testing.assert_close(packed_max, expected, rtol=1e-5, atol=0)


def test_packed_rows_are_refused_while_decoding_from_a_cache(model_and_conversations) -> None:
    model, conversations = model_and_conversations
    caches = [LatentCache.allocate(CONFIG, 1, 16, torch.float32, torch.device("cpu")) for _ in range(2)]
    with pytest.raises(ValueError, match="position_ids/document_ids: packed rows are for training"):
        model.model(conversations[0][None], caches, document_ids=torch.zeros(1, LENGTHS[0], dtype=torch.long))
