"""Parameter counts from the meta device, against transformers and the arithmetic of docs/model.md."""

import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from openk2.model import K2Config, count_parameters


def test_kimi_k2_total_equals_transformers_deepseek_v3_on_the_same_config():
    config = K2Config.preset("kimi-k2")
    with torch.device("meta"):
        reference = DeepseekV3ForCausalLM(DeepseekV3Config(**config.to_hf_dict()))
    assert count_parameters(config).total == reference.num_parameters()


def test_kimi_k2_counts_agree_with_the_spec_arithmetic():
    counts = count_parameters(K2Config.preset("kimi-k2"))
    attention = 101_124_096  # per layer incl. the q/kv latent norms (docs/model.md)
    expert = 3 * 7168 * 2048
    dense_ffn = 3 * 7168 * 18432
    embedding = 163840 * 7168
    total = 2 * embedding + 61 * (attention + 2 * 7168) + dense_ffn + 60 * (385 * expert + 384 * 7168) + 7168
    assert counts.total == total
    assert counts.activated == total - 60 * 376 * expert
    assert round(counts.total / 1e12, 3) == 1.026 and round(counts.activated / 1e9, 2) == 32.86
    assert round(counts.activated_without_embedding / 1e9, 2) == 31.69
