"""OpenK2 against transformers' DeepseekV3ForCausalLM: same checkpoint, same logits, in both directions."""

import pytest
import torch
from transformers import DeepseekV3ForCausalLM

from openk2.model import K2ForCausalLM
from tests.model.hf_reference import REFERENCE_VARIANTS, build_reference
from tests.numerics import FP32_EPS, assert_close_in_norm

SEQ_LEN = 40  # longer than the YaRN variants' original_max_position_embeddings (16)


@pytest.mark.parametrize("variant", sorted(REFERENCE_VARIANTS))
def test_loads_transformers_checkpoint_with_identical_logits(variant, tmp_path):
    reference = build_reference(variant)
    reference.save_pretrained(tmp_path)
    ours = K2ForCausalLM.from_pretrained(tmp_path).eval()
    input_ids = torch.randint(
        0, reference.config.vocab_size, (2, SEQ_LEN), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        expected = reference(input_ids).logits
        actual = ours(input_ids).logits
    assert_close_in_norm(actual, expected, 30 * FP32_EPS, variant)


@pytest.mark.parametrize("variant", ["k2-like", "no-q-lora", "k2-yarn", "grouped-routing"])
def test_transformers_loads_our_checkpoint_with_identical_logits(variant, tmp_path):
    source = build_reference(variant, seed=3)
    source.save_pretrained(tmp_path / "source")
    ours = K2ForCausalLM.from_pretrained(tmp_path / "source").eval()
    ours.save_pretrained(tmp_path / "ours")
    reloaded = DeepseekV3ForCausalLM.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    input_ids = torch.randint(
        0, ours.config.vocab_size, (2, SEQ_LEN), generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        assert_close_in_norm(reloaded(input_ids).logits, ours(input_ids).logits, 30 * FP32_EPS, variant)


def test_fresh_openk2_model_round_trips_through_transformers(tmp_path):
    from openk2.model import K2Config

    config = K2Config.preset("tiny")
    torch.manual_seed(0)
    ours = K2ForCausalLM(config).eval()
    with torch.no_grad():
        for moe in ours.moe_modules():
            moe.gate.e_score_correction_bias.normal_(0, 0.05)
    ours.save_pretrained(tmp_path)
    reference = DeepseekV3ForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    input_ids = torch.randint(0, config.vocab_size, (2, 32))
    with torch.no_grad():
        assert_close_in_norm(reference(input_ids).logits, ours(input_ids).logits, 30 * FP32_EPS, "tiny")
