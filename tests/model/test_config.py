"""K2Config: presets, HF config.json in both released styles, and errors that name the field."""

import json

import pytest

from openk2.model import PRESETS, K2Config, YarnRopeScaling

# The config.json of moonshotai/Kimi-K2-Instruct (July 2025), written out here as data: the preset must
# reproduce it, so a wrong preset value cannot hide behind a test built from the preset itself.
RELEASED_KIMI_K2_INSTRUCT = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "auto_map": {
        "AutoConfig": "configuration_deepseek.DeepseekV3Config",
        "AutoModel": "modeling_deepseek.DeepseekV3Model",
        "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM",
    },
    "aux_loss_alpha": 0.001,
    "bos_token_id": 163584,
    "eos_token_id": 163585,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "initializer_range": 0.02,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 131072,
    "model_type": "kimi_k2",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 1,
    "n_routed_experts": 384,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 64,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 64,
    "num_nextn_predict_layers": 0,
    "pretraining_tp": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
    "rms_norm_eps": 1e-06,
    "rope_theta": 50000.0,
    "routed_scaling_factor": 2.827,
    "rope_scaling": {
        "beta_fast": 1.0,
        "beta_slow": 1.0,
        "factor": 32.0,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "scoring_func": "sigmoid",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 1,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.48.3",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 163840,
}


def test_kimi_k2_preset_is_the_released_configuration(tmp_path):
    """K2 report §2.3, Table 2: 61 layers (1 dense), 64 heads, 384 experts (8 active + 1 shared), no grouping."""
    (tmp_path / "config.json").write_text(json.dumps(RELEASED_KIMI_K2_INSTRUCT))
    released = K2Config.from_pretrained(tmp_path)
    assert released == K2Config.preset("kimi-k2")
    # every field the released file sets is read, none falls back to a default
    read = released.model_dump()
    for field, value in RELEASED_KIMI_K2_INSTRUCT.items():
        if field in K2Config.model_fields:
            expected = YarnRopeScaling(**value).model_dump() if field == "rope_scaling" else value
            assert read[field] == expected, field


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_sets_only_config_fields_and_keeps_its_values(name):
    """K2Config ignores unknown keys (a config.json carries many): a misspelt preset key would vanish."""
    preset = PRESETS[name]
    assert set(preset) - set(K2Config.model_fields) == set()
    config = K2Config.preset(name)
    read = config.model_dump()
    for field, value in preset.items():
        expected = YarnRopeScaling(**value).model_dump() if field == "rope_scaling" and value else value
        assert read[field] == expected, field
    written = config.to_hf_dict()
    assert K2Config.from_hf_dict(written).to_hf_dict() == written  # config.json reads back as written


def test_the_small_presets_keep_k2s_structure():
    """tiny and small: one dense layer, one shared expert, sigmoid top-k routing over 16 experts, MLA with
    a query bottleneck, and the 256 reserved special tokens at the top of the vocabulary."""
    for name in ("tiny", "small"):
        config = K2Config.preset(name)
        assert (config.first_k_dense_replace, config.n_shared_experts, config.n_routed_experts) == (1, 1, 16)
        assert config.q_lora_rank is not None and config.scoring_func == "sigmoid"
        assert (config.bos_token_id, config.eos_token_id) == (
            config.vocab_size - 256,
            config.vocab_size - 255,
        )


def test_written_config_reads_back_identically():
    config = K2Config.preset("kimi-k2")
    assert K2Config.from_hf_dict(config.to_hf_dict()) == config


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"n_group": 3}, "n_group"),
        ({"num_experts_per_tok": 99}, "num_experts_per_tok"),
        ({"qk_rope_head_dim": 7}, "qk_rope_head_dim"),
        ({"num_key_value_heads": 2}, "num_key_value_heads"),
        ({"scoring_func": "softmax"}, "scoring_func"),
    ],
)
def test_invalid_values_name_the_field(override, field):
    with pytest.raises(ValueError, match=field):
        K2Config.from_hf_dict({"model_type": "deepseek_v3", **PRESETS["tiny"], **override})


def test_unknown_model_type_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **PRESETS["tiny"]}))
    with pytest.raises(ValueError, match="model_type"):
        K2Config.from_pretrained(tmp_path)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="kimi-k2"):
        K2Config.preset("huge")
