"""K2 report §2.3, Fig. 5: at a fixed number of activated experts (so fixed activated parameters and FLOPs),
more total experts — higher sparsity — lower the validation loss at equal training tokens.

The `tiny` K2 model (1 dense + 3 MoE layers, MLA) on Shakespeare with 2 routed experts active per token plus
1 shared expert, and 2, 4, 8, 16 routed experts in total: sparsity (total / active) 1, 2, 4, 8. Every other
dimension is fixed, so each token's FLOPs are the same up to the router (hidden × experts, <1% here).
MuonClip at lr 1e-2 and weight decay 0.1 (as in repro/qk_clip_loss.py), 80 steps of 8 × 64 tokens, three
model-initialisation seeds each, the same tokens.

    python repro/sparsity_scaling.py            # ~3 min on one core
    python repro/sparsity_scaling.py --quick    # seconds
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    band,
    experiment,
    mean_std,
    pretraining_run,
    shakespeare,
    tiny_model,
)

from openk2.model import K2Config, count_parameters
from openk2.model.config import PRESETS

CLAIM = "sparsity_scaling"
ACTIVE = 2
FULL: dict[str, Any] = dict(
    steps=80, experts=[2, 4, 8, 16], lr=1e-2, batch_size=8, seq_len=64, vocab=2048, val_every=10
)
QUICK: dict[str, Any] = dict(
    steps=8, experts=[2, 4], lr=3e-3, batch_size=4, seq_len=32, vocab=768, val_every=4
)


def main() -> None:
    exp = experiment(CLAIM, __doc__, default_seeds=3)
    size = QUICK if exp.quick else FULL
    corpus = shakespeare(exp.data_root, size["vocab"], exp.quick)
    steps = size["steps"]
    arms = {}
    for experts in size["experts"]:
        model = tiny_model(corpus.vocab_size, n_routed_experts=experts, num_experts_per_tok=ACTIVE)
        runs = [
            pretraining_run(
                exp.run_dir(f"experts{experts}_seed{seed}"),
                dict(
                    data=corpus.data_section(size["seq_len"]),
                    run=dict(seed=seed, steps=steps, val_every=size["val_every"], val_max_batches=8),
                    model=model,
                    optim=dict(lr=size["lr"], weight_decay=0.1),
                    schedule=dict(warmup_steps=steps // 15, decay_fraction=0.3, final_lr=size["lr"] / 10),
                    train=dict(batch_size=size["batch_size"], expert_bias_update_rate=1e-2),
                ),
            )
            for seed in range(exp.seeds)
        ]
        counts = count_parameters(K2Config(**{**PRESETS["tiny"], **model["overrides"]}))
        final = [r.final_val_loss for r in runs]
        arms[str(experts)] = dict(
            sparsity=experts / ACTIVE,
            total_parameters=counts.total,
            activated_parameters=counts.activated,
            # 2 × the matmul weights one token uses (the embedding is a lookup): equal but for the router
            activated_flops_per_token=2 * counts.activated_without_embedding,
            final_val_loss=final,
            mean_std=mean_std(final),
            val_steps=runs[0].val_steps,
            val_loss=[r.val_losses for r in runs],
            training_seconds=[round(r.seconds, 1) for r in runs],
        )
    means = [arm["mean_std"][0] for arm in arms.values()]
    results = dict(
        claim="K2 report Fig. 5: more total experts at fixed active experts lowers validation loss",
        settings=size | dict(active_experts=ACTIVE, shared_experts=1, seeds=list(range(exp.seeds))),
        arms=arms,
        monotone_decreasing=all(b < a for a, b in itertools.pairwise(means)),
        loss_drop_lowest_to_highest_sparsity=means[0] - means[-1],
    )
    exp.write(results, figure(arms))


def figure(arms: dict):  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    fig, (final, curves) = plt.subplots(1, 2, figsize=(10, 3.6))
    sparsity = [arm["sparsity"] for arm in arms.values()]
    for arm in arms.values():
        final.scatter(
            [arm["sparsity"]] * len(arm["final_val_loss"]), arm["final_val_loss"], color="gray", s=10
        )
    final.errorbar(
        sparsity,
        [arm["mean_std"][0] for arm in arms.values()],
        yerr=[arm["mean_std"][1] for arm in arms.values()],
        fmt="o-",
        color="tab:blue",
        capsize=3,
        label="mean ± std of seeds",
    )
    final.set(xscale="log", xlabel="sparsity (total / active experts)", ylabel="final validation loss")
    final.set_xticks(sparsity, [f"{s:g}" for s in sparsity])
    final.set_xticks([], minor=True)  # no log-scale minor labels between the sparsities
    final.set_title("Validation loss at equal tokens")
    final.legend()
    colors = plt.cm.viridis([i / max(1, len(arms) - 1) for i in range(len(arms))])
    for (experts, arm), color in zip(arms.items(), colors, strict=True):
        band(
            curves,
            arm["val_steps"],
            arm["val_loss"],
            f"{experts} experts (sparsity {arm['sparsity']:g})",
            color,
        )
    curves.set(xlabel="step", ylabel="validation loss", title="Validation curves (min–max of seeds)")
    curves.set_ylim(top=min(7.0, curves.get_ylim()[1]))
    curves.legend()
    return fig


if __name__ == "__main__":
    main()
