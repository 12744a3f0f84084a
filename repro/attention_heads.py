"""K2 report §2.3, Fig. 6: doubling the attention heads (from #heads = #layers) at fixed other dimensions
lowers validation loss only a little (the report: 0.5–1.2%), while it costs inference FLOPs at long context
(the report: +83% at 128k for 64 → 128 heads at K2's size).

Quality: the `tiny` K2 model (4 layers, so 4 heads = #layers) against the same model with 8 heads; head
dimensions, latent ranks, experts and everything else fixed; MuonClip at lr 1e-2, 80 steps of 8 × 64 tokens,
three model-initialisation seeds each. Cost: decode tokens/s of both models at a long context (prefill, then
tokens from MLA's latent cache, the two models alternated, best of N), the KV cache per token, and the
attention FLOPs per decoded token counted from the shapes — for the tiny models and for K2's released shape at
128k.

    python repro/attention_heads.py            # ~2 min on one core
    python repro/attention_heads.py --quick    # seconds
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from harness import (
    band,
    experiment,
    mean_std,
    pretraining_run,
    shakespeare,
    tiny_model,
)

from openk2.model import K2Config, K2ForCausalLM, count_parameters
from openk2.model.config import PRESETS
from openk2.model.generate import generate

CLAIM = "attention_heads"
FULL: dict[str, Any] = dict(
    steps=80, heads=[4, 8], lr=1e-2, batch_size=8, seq_len=64, vocab=2048, val_every=10
)
QUICK: dict[str, Any] = dict(steps=8, heads=[4, 8], lr=3e-3, batch_size=4, seq_len=32, vocab=768, val_every=4)
DECODE_FULL: dict[str, Any] = dict(context=2048, new_tokens=32, repeats=3)
DECODE_QUICK: dict[str, Any] = dict(context=128, new_tokens=4, repeats=1)
K2_CONTEXT = 131072


def decode_flops_per_token(
    config: K2Config, context: int, form: Literal["absorbed", "expanded"] = "absorbed"
) -> dict[str, float]:
    """FLOPs of one decoded token that attends to `context` tokens.

    Weights: 2 × the activated parameters but the embedding (absorbed: W_UK folded into the query and W_UV
    applied after the weighted sum cost what kv_b_proj's rows do). Attention, per head, layer and attended
    token: absorbed (MLA's latent cache, as `openk2.model` decodes) the logit against the latent and the
    rotary key, 2·(r + d_rope), plus the weighted sum of latents, 2·r (r = kv_lora_rank); expanded (per-head
    keys and values cached) 2·(d_qk + d_v).
    """
    weights = 2 * count_parameters(config).activated_without_embedding
    if form == "absorbed":
        per_position = 2 * (2 * config.kv_lora_rank + config.qk_rope_head_dim)
    else:
        per_position = 2 * (config.qk_head_dim + config.v_head_dim)
    attention = config.num_hidden_layers * config.num_attention_heads * context * per_position
    return dict(weights=weights, attention=attention, total=weights + attention)


def kv_cache_values_per_token(config: K2Config) -> int:
    """MLA caches one latent and one rotary key per token and layer, whatever the number of heads."""
    return config.num_hidden_layers * (config.kv_lora_rank + config.qk_rope_head_dim)


@torch.no_grad()
def decode_tokens_per_second(
    configs: dict[int, K2Config], context: int, new_tokens: int, repeats: int
) -> dict:
    """Per head count: best of `repeats` decode speeds after a `context`-token prefill, models alternated."""
    torch.manual_seed(0)
    models = {heads: K2ForCausalLM(config).eval() for heads, config in configs.items()}
    prompt = torch.randint(0, 200, (1, context))
    speeds: dict[int, list[float]] = {heads: [] for heads in models}
    for _ in range(repeats):
        for heads, model in models.items():
            stamps: list[float] = []

            def stamp(_: torch.Tensor, stamps: list[float] = stamps) -> None:
                stamps.append(time.perf_counter())

            generate(model, prompt, new_tokens, on_token=stamp)
            # the first token comes from the prefill; the rest are decode steps from the latent cache
            speeds[heads].append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    return {heads: max(values) for heads, values in speeds.items()}


def main() -> None:
    exp = experiment(CLAIM, __doc__, default_seeds=3)
    size = QUICK if exp.quick else FULL
    decode = DECODE_QUICK if exp.quick else DECODE_FULL
    corpus = shakespeare(exp.data_root, size["vocab"], exp.quick)
    steps = size["steps"]
    arms = {}
    for heads in size["heads"]:
        model = tiny_model(corpus.vocab_size, num_attention_heads=heads)
        runs = [
            pretraining_run(
                exp.run_dir(f"heads{heads}_seed{seed}"),
                dict(
                    data=corpus.data_section(size["seq_len"]),
                    run=dict(seed=seed, steps=steps, val_every=size["val_every"], val_max_batches=8),
                    model=model,
                    optim=dict(lr=size["lr"], weight_decay=0.1),
                    schedule=dict(warmup_steps=steps // 15, decay_fraction=0.3, final_lr=size["lr"] / 10),
                    train=dict(batch_size=size["batch_size"]),
                ),
            )
            for seed in range(exp.seeds)
        ]
        final = [r.final_val_loss for r in runs]
        config = K2Config(**{**PRESETS["tiny"], **model["overrides"]})
        arms[str(heads)] = dict(
            total_parameters=count_parameters(config).total,
            final_val_loss=final,
            mean_std=mean_std(final),
            val_steps=runs[0].val_steps,
            val_loss=[r.val_losses for r in runs],
            training_seconds=[round(r.seconds, 1) for r in runs],
        )

    # inference cost of the two shapes at a long context (fresh weights: the speed does not depend on them)
    long_context = {
        heads: K2Config(
            **{**PRESETS["tiny"], **tiny_model(corpus.vocab_size, num_attention_heads=heads)["overrides"]}
            | dict(max_position_embeddings=2 * decode["context"])
        )
        for heads in size["heads"]
    }
    speeds = decode_tokens_per_second(long_context, **decode)
    k2 = {
        heads: K2Config(**PRESETS["kimi-k2"] | dict(num_attention_heads=heads, num_key_value_heads=heads))
        for heads in (64, 128)
    }

    def k2_increase(context: int, form: Literal["absorbed", "expanded"]) -> float:
        low, high = (decode_flops_per_token(k2[heads], context, form)["total"] for heads in (64, 128))
        return 100 * (high / low - 1)

    for heads, config in long_context.items():
        arms[str(heads)] |= dict(
            decode_tokens_per_second=speeds[heads],
            decode_flops_per_token=decode_flops_per_token(config, decode["context"]),
            kv_cache_values_per_token=kv_cache_values_per_token(config),
        )

    low, high = (arms[str(h)] for h in size["heads"])
    results = dict(
        claim="K2 report Fig. 6: 2x attention heads lowers validation loss by only 0.5-1.2% at a large inference cost",
        settings=size | dict(decode=decode, seeds=list(range(exp.seeds)), model="tiny preset, 4 layers"),
        arms=arms,
        val_loss_lower_by_percent=100 * (low["mean_std"][0] - high["mean_std"][0]) / low["mean_std"][0],
        seed_std_percent=100 * max(low["mean_std"][1], high["mean_std"][1]) / low["mean_std"][0],
        decode_slowdown=low["decode_tokens_per_second"] / high["decode_tokens_per_second"],
        decode_flops_increase_percent=100
        * (high["decode_flops_per_token"]["total"] / low["decode_flops_per_token"]["total"] - 1),
        # the report does not say how it counts; the convention spans its 83%
        k2_64_to_128_heads=dict(
            flops_increase_percent={
                f"{form}, {where}": k2_increase(context, form)
                for form in ("absorbed", "expanded")
                for where, context in (
                    ("token at 128k", K2_CONTEXT),
                    ("mean over a 128k sequence", K2_CONTEXT // 2),
                )
            },
            report_percent=83,
            kv_cache_values_per_token={h: kv_cache_values_per_token(c) for h, c in k2.items()},
        ),
    )
    exp.write(results, figure(arms, decode["context"]))


def figure(arms: dict, context: int):  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    fig, (curves, cost) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (heads, arm), color in zip(arms.items(), ("tab:blue", "tab:red"), strict=True):
        mean, std = arm["mean_std"]
        band(curves, arm["val_steps"], arm["val_loss"], f"{heads} heads: final {mean:.3f} ± {std:.3f}", color)
    curves.set(xlabel="step", ylabel="validation loss", title="Validation loss (min–max of seeds)")
    curves.set_ylim(top=min(7.0, curves.get_ylim()[1]))
    curves.legend()
    labels = [f"{heads} heads" for heads in arms]
    speeds = [arm["decode_tokens_per_second"] for arm in arms.values()]
    flops = [arm["decode_flops_per_token"]["total"] / 1e6 for arm in arms.values()]
    bars = cost.bar(labels, speeds, color=["tab:blue", "tab:red"])
    cost.bar_label(bars, [f"{s:.0f} tok/s\n{f:.1f} MFLOP/tok" for s, f in zip(speeds, flops, strict=True)])
    cost.set(ylabel="decode tokens/s (batch 1)", title=f"Decoding at {context} tokens of context")
    cost.set_ylim(top=max(speeds) * 1.35)
    return fig


if __name__ == "__main__":
    main()
