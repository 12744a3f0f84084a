"""Every DeepSeek-V3-family checkpoint loads: released config.json shapes, exact parameter counts, MTP layers.

The released configs are written out here as data (Kimi-K2's lives in test_config.py); the counts are checked
against transformers' DeepseekV3ForCausalLM built on the meta device and against the literal totals.
"""

import json
import logging
import time

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from openk2.model import K2Config, K2ForCausalLM, count_parameters
from tests.model.hf_reference import build_reference
from tests.model.test_config import RELEASED_KIMI_K2_INSTRUCT
from tests.numerics import FP32_EPS, assert_close_in_norm

FP8_QUANTIZATION = {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": [128, 128],
}

# deepseek-ai/DeepSeek-V3 config.json: 3 dense layers, grouped routing, and one MTP module (layer 61).
RELEASED_DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.001,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 3,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "initializer_range": 0.02,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "quantization_config": FP8_QUANTIZATION,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 129280,
}

# moonshotai/Moonlight-16B-A3B config.json: no query bottleneck, 2 shared experts.
RELEASED_MOONLIGHT = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.001,
    "bos_token_id": 163584,
    "eos_token_id": 163585,
    "ep_size": 1,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 11264,
    "kv_lora_rank": 512,
    "max_position_embeddings": 8192,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 1408,
    "moe_layer_freq": 1,
    "n_group": 1,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "norm_topk_prob": True,
    "num_attention_heads": 16,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 27,
    "num_key_value_heads": 16,
    "num_nextn_predict_layers": 0,
    "q_lora_rank": None,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 50000.0,
    "routed_scaling_factor": 2.446,
    "scoring_func": "sigmoid",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 1,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 163840,
}

RELEASED = {
    "kimi-k2": RELEASED_KIMI_K2_INSTRUCT,
    "deepseek-v3": RELEASED_DEEPSEEK_V3,
    "moonlight-16b-a3b": RELEASED_MOONLIGHT,
}
# nn.Parameters of the decoder (MTP modules excluded, as transformers builds none): the closed form is
# test_params.py's for Kimi-K2; DeepSeek-V3's is the published 671B main model.
EXACT_TOTALS = {
    "kimi-k2": 1_026_408_209_408,
    "deepseek-v3": 671_026_404_352,
    "moonlight-16b-a3b": 15_960_108_544,
}


def test_deepseek_v3_and_moonlight_totals_are_their_closed_forms():
    attention = 7168 * 1536 + 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 + 512 * 128 * 256 + 128 * 128 * 7168
    expert = 3 * 7168 * 2048
    total = (
        2 * 129280 * 7168
        + 61 * (attention + 2 * 7168)
        + 3 * 3 * 7168 * 18432
        + 58 * (257 * expert + 256 * 7168)
        + 7168
    )
    assert total == EXACT_TOTALS["deepseek-v3"]
    # Moonlight: a plain 2048 -> 16·192 query projection, 2 shared experts of 1408, 26 MoE layers
    attention = 2048 * 16 * 192 + 2048 * 576 + 512 + 512 * 16 * 256 + 16 * 128 * 2048
    expert = 3 * 2048 * 1408
    total = (
        2 * 163840 * 2048 + 27 * (attention + 2 * 2048) + 3 * 2048 * 11264 + 26 * (66 * expert + 64 * 2048)
    )
    assert total + 2048 == EXACT_TOTALS["moonlight-16b-a3b"]


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_config_validates_on_meta_with_its_exact_parameter_count(name, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(RELEASED[name]))
    config = K2Config.from_pretrained(tmp_path)
    assert config.num_nextn_predict_layers == RELEASED[name]["num_nextn_predict_layers"]
    started = time.perf_counter()
    counts = count_parameters(config)  # builds the whole model on the meta device
    seconds = time.perf_counter() - started
    assert counts.total == EXACT_TOTALS[name], f"{name}: {counts.total:,} ({seconds:.1f} s on meta)"
    hf_fields = {k: v for k, v in RELEASED[name].items() if k != "quantization_config"}
    with torch.device("meta"):
        reference = DeepseekV3ForCausalLM(DeepseekV3Config(**hf_fields))
    assert reference.num_parameters() == counts.total


def test_a_released_config_file_equals_its_preset():
    assert K2Config.from_hf_dict(RELEASED_MOONLIGHT) == K2Config.preset("moonlight-16b-a3b")


def _append_mtp_layer(directory, layers: int) -> list[str]:
    """Adds a DeepSeek-V3-layout MTP module as layer `layers`: a full decoder layer plus its own norms and
    projections, as the released checkpoint stores it (transformers saves none, having built none)."""
    tensors = load_file(directory / "model.safetensors")
    last = f"model.layers.{layers - 1}."
    added = {
        name.replace(last, f"model.layers.{layers}."): tensor.clone() + 1.0
        for name, tensor in tensors.items()
        if name.startswith(last)
    }
    hidden = tensors["model.norm.weight"].shape[0]
    prefix = f"model.layers.{layers}."
    added[prefix + "enorm.weight"] = torch.ones(hidden)
    added[prefix + "hnorm.weight"] = torch.ones(hidden)
    added[prefix + "eh_proj.weight"] = torch.randn(hidden, 2 * hidden)
    added[prefix + "shared_head.norm.weight"] = torch.ones(hidden)
    added[prefix + "shared_head.head.weight"] = torch.randn_like(tensors["lm_head.weight"])
    added[prefix + "embed_tokens.weight"] = torch.randn_like(tensors["model.embed_tokens.weight"])
    save_file({**tensors, **added}, directory / "model.safetensors", {"format": "pt"})
    return sorted(added)


def test_transformers_checkpoint_with_an_mtp_layer_loads_with_transformers_logits(tmp_path, caplog):
    reference = build_reference("k2-like")
    reference.config.num_nextn_predict_layers = 1
    reference.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["num_nextn_predict_layers"] == 1
    layers = reference.config.num_hidden_layers
    added = _append_mtp_layer(tmp_path, layers)

    with caplog.at_level(logging.WARNING, logger="openk2.model"):
        ours = K2ForCausalLM.from_pretrained(tmp_path).eval()
    assert ours.config.num_nextn_predict_layers == 1
    assert f"skipped {len(added)} tensors of multi-token-prediction layers [{layers}]" in caplog.text

    reloaded = DeepseekV3ForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    input_ids = torch.randint(
        0, reference.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(5)
    )
    with torch.no_grad():
        expected = reloaded(input_ids).logits
        assert_close_in_norm(ours(input_ids).logits, expected, 30 * FP32_EPS, "mtp checkpoint")
        assert_close_in_norm(reference(input_ids).logits, expected, 30 * FP32_EPS, "transformers reload")


def test_saved_config_says_no_mtp_module_was_saved(tmp_path):
    config = K2Config.from_hf_dict({**RELEASED_DEEPSEEK_V3})
    written = config.to_hf_dict()
    assert written["num_nextn_predict_layers"] == 0 and written["num_mtp_layers"] == 0
