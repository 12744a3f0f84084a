"""repro/attention_heads.py (K2 report Fig. 6): the decode-FLOP count against PyTorch's own, and the script."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attention_heads import decode_flops_per_token, kv_cache_values_per_token
from torch.utils.flop_counter import FlopCounterMode

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.config import PRESETS
from openk2.model.mla import LatentCache
from tests.repro.conftest import run_quick


@pytest.mark.parametrize("heads", [4, 8])
def test_decode_flops_match_pytorchs_count_of_a_decode_step(heads: int) -> None:
    """FlopCounterMode counts the matmuls of a real decode step from the latent cache; it does not see the
    grouped expert GEMMs or the norms' elementwise scales, which are added here from the shapes."""
    config = K2Config(**PRESETS["tiny"] | dict(num_attention_heads=heads, vocab_size=1024))
    model = K2ForCausalLM(config).eval()
    context = 40
    caches = [
        LatentCache.allocate(config, 1, context + 1, torch.float32, torch.device("cpu")) for _ in range(4)
    ]
    with torch.no_grad():
        model.model(torch.randint(0, 100, (1, context)), caches)
        with FlopCounterMode(display=False) as counter:
            model.lm_head(model.model(torch.randint(0, 100, (1, 1)), caches)[:, -1])
    moe_layers = config.num_hidden_layers - config.first_k_dense_replace
    routed = (
        moe_layers * config.num_experts_per_tok * 2 * 3 * config.hidden_size * config.moe_intermediate_size
    )
    norms = config.num_hidden_layers * (2 * config.hidden_size + config.q_lora_rank + config.kv_lora_rank)
    norms += config.hidden_size  # the final norm
    expected = decode_flops_per_token(config, context + 1)["total"]
    assert counter.get_total_flops() + routed + 2 * norms == expected


def test_mla_cache_does_not_grow_with_heads_but_expanded_attention_flops_do() -> None:
    low, high = (K2Config(**PRESETS["tiny"] | dict(num_attention_heads=h)) for h in (4, 8))
    assert kv_cache_values_per_token(low) == kv_cache_values_per_token(high) == 4 * (64 + 16)
    for form in ("absorbed", "expanded"):
        a, b = decode_flops_per_token(low, 1000, form), decode_flops_per_token(high, 1000, form)
        assert b["attention"] == 2 * a["attention"]
        assert b["weights"] > a["weights"]


@pytest.mark.long  # the script run end to end in its quick form
def test_doubling_heads_quality_and_decode_cost(tmp_path: Path, quick_data_root: Path) -> None:
    results = run_quick("attention_heads", tmp_path, quick_data_root, "--seeds", "1")
    four, eight = results["arms"]["4"], results["arms"]["8"]
    assert eight["total_parameters"] > four["total_parameters"]
    assert four["kv_cache_values_per_token"] == eight["kv_cache_values_per_token"]
    assert eight["decode_flops_per_token"]["total"] > four["decode_flops_per_token"]["total"]
    assert four["decode_tokens_per_second"] > 0 and eight["decode_tokens_per_second"] > 0
    # K2's shape at 128k: every counting convention lands near the report's +83%
    increases = results["k2_64_to_128_heads"]["flops_increase_percent"]
    assert len(increases) == 4 and all(60 < value < 100 for value in increases.values())
    assert min(increases.values()) < results["k2_64_to_128_heads"]["report_percent"] < max(increases.values())
