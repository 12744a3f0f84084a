"""Muon's token efficiency (Moonlight, "Muon is Scalable for LLM Training", on which K2 §2.1 builds: about 2×
the compute efficiency of AdamW): tokens to reach a target validation loss, each optimizer at its best
learning rate from a small sweep, on the same data.

The `tiny` K2 model on Shakespeare; MuonClip as the project trains it (Muon with the update scaled to AdamW's
RMS, 0.2·√max(n, m), AdamW for embeddings, head and norms, τ = 100) against `optimizer = "adamw"` (AdamW on
every parameter, betas 0.9/0.95, the same weight decay 0.1). Both sweep the same learning rates at a constant
rate after warm-up (so that a run's loss at a given token count does not depend on its length), seed 0; the
best rate of each then runs two more seeds. The target is the worst final validation loss among the best
runs, so every best run reaches it; a run's tokens to the target are interpolated between evaluations.

    python repro/muon_vs_adamw.py            # ~18 min on one shared core
    python repro/muon_vs_adamw.py --quick    # seconds
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    RunResult,
    band,
    experiment,
    mean_std,
    pretraining_run,
    shakespeare,
    tiny_model,
)

CLAIM = "muon_vs_adamw"
FULL: dict[str, Any] = dict(
    steps=100, lrs=[1e-3, 3e-3, 1e-2], batch_size=8, seq_len=64, vocab=2048, val_every=10
)
QUICK: dict[str, Any] = dict(steps=10, lrs=[3e-3, 1e-2], batch_size=4, seq_len=32, vocab=768, val_every=5)
OPTIMIZERS = ("adamw", "muonclip")


def tokens_to_target(run: RunResult, target: float) -> float | None:
    """Tokens at which the validation curve first reaches `target`, linear between evaluations; None if never."""
    previous = (0, float("inf"))
    for step, loss in zip(run.val_steps, run.val_losses, strict=True):
        if loss <= target:
            (step0, loss0), fraction = previous, 1.0
            if loss0 != float("inf"):
                fraction = (loss0 - target) / (loss0 - loss)
            return (step0 + fraction * (step - step0)) * run.tokens_per_step
        previous = (step, loss)
    return None


def main() -> None:
    exp = experiment(CLAIM, __doc__, default_seeds=3)
    size = QUICK if exp.quick else FULL
    corpus = shakespeare(exp.data_root, size["vocab"], exp.quick)
    steps = size["steps"]

    def run(optimizer: str, lr: float, seed: int) -> RunResult:
        return pretraining_run(
            exp.run_dir(f"{optimizer}_lr{lr:g}_seed{seed}"),
            dict(
                data=corpus.data_section(size["seq_len"]),
                run=dict(seed=seed, steps=steps, val_every=size["val_every"], val_max_batches=8),
                model=tiny_model(corpus.vocab_size),
                optim=dict(optimizer=optimizer, lr=lr, weight_decay=0.1),
                schedule=dict(warmup_steps=steps // 15, decay_fraction=0.0, final_lr=lr / 10),
                train=dict(batch_size=size["batch_size"]),
            ),
        )

    sweep = {opt: {lr: run(opt, lr, seed=0) for lr in size["lrs"]} for opt in OPTIMIZERS}
    best_lr = {opt: min(runs, key=lambda lr: runs[lr].final_val_loss) for opt, runs in sweep.items()}
    best = {
        opt: [sweep[opt][best_lr[opt]]] + [run(opt, best_lr[opt], seed) for seed in range(1, exp.seeds)]
        for opt in OPTIMIZERS
    }
    target = max(r.final_val_loss for runs in best.values() for r in runs)
    arms = {}
    for opt in OPTIMIZERS:
        tokens = [tokens_to_target(r, target) for r in best[opt]]
        final = [r.final_val_loss for r in best[opt]]
        arms[opt] = dict(
            sweep_final_val_loss={f"{lr:g}": r.final_val_loss for lr, r in sweep[opt].items()},
            best_lr=best_lr[opt],
            final_val_loss=final,
            final_val_loss_mean_std=mean_std(final),
            tokens_to_target=tokens,
            tokens_to_target_mean_std=mean_std([t for t in tokens if t is not None]),
            val_steps=best[opt][0].val_steps,
            val_loss=[r.val_losses for r in best[opt]],
            max_logit_peak=max(max(r.series("max_logit")) for r in best[opt]),
            heads_clipped_steps=sum(1 for r in best[opt] for rec in r.records if rec.heads_clipped),
        )
    adamw_tokens, muon_tokens = (arms[opt]["tokens_to_target_mean_std"][0] for opt in OPTIMIZERS)
    results = dict(
        claim="Moonlight / K2 §2.1: Muon reaches a target loss with about half the tokens of AdamW",
        settings=size | dict(weight_decay=0.1, seeds=list(range(exp.seeds)), model="tiny preset"),
        target_val_loss=target,
        tokens_per_step=best["adamw"][0].tokens_per_step,
        arms=arms,
        token_efficiency_muon_over_adamw=adamw_tokens / muon_tokens,
    )
    exp.write(results, figure(sweep, best, target))


def figure(sweep: dict, best: dict, target: float):  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    colors = {"adamw": "tab:orange", "muonclip": "tab:blue"}
    names = {"adamw": "AdamW", "muonclip": "Muon (MuonClip)"}
    fig, (curves, lrs) = plt.subplots(1, 2, figsize=(10, 3.6))
    for opt, runs in best.items():
        tokens = [step * runs[0].tokens_per_step for step in runs[0].val_steps]
        band(
            curves,
            tokens,
            [r.val_losses for r in runs],
            f"{names[opt]}, lr {runs[0].name.split('_lr')[1].split('_')[0]}",
            colors[opt],
        )
    curves.axhline(target, color="gray", linestyle="--", linewidth=0.8, label="target")
    curves.set(
        xlabel="training tokens", ylabel="validation loss", title="Best learning rate (min–max of seeds)"
    )
    curves.set_ylim(top=min(7.0, curves.get_ylim()[1]))
    curves.legend()
    for opt, runs in sweep.items():
        lr_values = sorted(runs)
        lrs.plot(
            lr_values,
            [runs[lr].final_val_loss for lr in lr_values],
            "o-",
            color=colors[opt],
            label=names[opt],
        )
    lrs.set(xscale="log", xlabel="peak learning rate", ylabel="final validation loss", title="Sweep (seed 0)")
    lrs.legend()
    return fig


if __name__ == "__main__":
    main()
