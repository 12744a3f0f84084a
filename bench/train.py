"""Training throughput: `openk2 pretrain`'s step vs a plain transformers DeepseekV3 loop, same config and data.

openk2: exactly the functions `openk2.train.train` calls per step — grad_accum forward/backward micro-batches
with expert-load counting, global-norm clipping, MuonClip (Muon + AdamW + QK-Clip with max-logit recording),
the WSD schedule and the expert-bias update.
transformers: DeepseekV3ForCausalLM (same weights) with torch.optim.Muon on the 2-D hidden matrices and AdamW on
everything else — including the fused 3-D expert tensors, which torch.optim.Muon rejects — and the same clipping.
Both read the same batches from the recipe's shards; they alternate in one process (min and median of N).
A short real `pretrain` run adds its end-to-end median tokens/s (validation and checkpoints excluded).
Usage: python bench/train.py [--recipe recipes/pretrain-tiny.toml] [--repeats 7] [--pretrain-steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from common import fp32_gemm_peak_flops, summary, time_alternating
from model import _hf_state, training_flops_per_token
from rich.console import Console
from rich.table import Table
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from openk2.data import PackedSequenceLoader
from openk2.model import K2ForCausalLM
from openk2.optim.param_groups import is_hidden_matrix
from openk2.train import load_recipe, pretrain
from openk2.train.balance import ExpertLoad, update_expert_bias_
from openk2.train.loop import build_optimizer, clip_grad_norm_, forward_backward
from openk2.train.metrics import read_metrics
from openk2.train.recipe import Recipe
from openk2.train.world import World


def openk2_step(recipe: Recipe, loader: PackedSequenceLoader):
    """One optimizer step of the pre-training loop, built the way `train` builds it (no logging)."""
    torch.manual_seed(recipe.run.seed)
    model = K2ForCausalLM(recipe.model_config_k2())
    optimizer = build_optimizer(model, recipe)
    scheduler = recipe.lr_schedule().scheduler(optimizer)
    expert_load = ExpertLoad(model.moe_modules())
    autocast = torch.autocast("cpu", enabled=False)
    world = World(rank=0, world_size=1)

    def step() -> None:
        micro_batches = [next(loader) for _ in range(recipe.train.grad_accum)]
        forward_backward(model, micro_batches, autocast, expert_load)
        clip_grad_norm_(model, recipe.optim.grad_clip, world)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        update_expert_bias_(
            model.moe_modules(), expert_load.take_global(world), recipe.train.expert_bias_update_rate
        )

    return model, step


def transformers_step(recipe: Recipe, loader: PackedSequenceLoader, weights_from: K2ForCausalLM):
    config = recipe.model_config_k2()
    model = DeepseekV3ForCausalLM(DeepseekV3Config(**config.to_hf_dict()))
    model.load_state_dict(_hf_state(weights_from), strict=True)
    head = model.get_output_embeddings()
    muon_params, adamw_params = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            two_d_hidden = param.ndim == 2 and is_hidden_matrix(module, param, head)
            (muon_params if two_d_hidden else adamw_params).append(param)
    opt = recipe.optim
    muon = torch.optim.Muon(
        muon_params,
        lr=opt.lr,
        weight_decay=opt.weight_decay,
        momentum=opt.momentum,
        adjust_lr_fn="match_rms_adamw",
    )
    adamw = torch.optim.AdamW(adamw_params, lr=opt.lr, weight_decay=opt.weight_decay, betas=opt.adamw_betas)

    def step() -> None:
        for _ in range(recipe.train.grad_accum):
            input_ids = next(loader)
            (model(input_ids, labels=input_ids).loss / recipe.train.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip or float("inf"))
        muon.step()
        adamw.step()
        model.zero_grad(set_to_none=True)

    return step, len(muon_params), len(adamw_params)


def pretrain_tokens_per_second(recipe_path: Path, steps: int) -> float:
    """Median per-step tokens/s of a real `pretrain` run of `steps` steps, in a temporary run directory."""
    document = tomllib.loads(recipe_path.read_text())
    with tempfile.TemporaryDirectory() as scratch:
        run = {**document["run"], "output_dir": scratch, "steps": steps, "checkpoint_every": steps}
        run.update(val_every=steps, val_max_batches=1, sample_tokens=0)
        schedule = {**document.get("schedule", {}), "warmup_steps": min(steps // 2, 5)}
        lines = []
        for section, fields in {**document, "run": run, "schedule": schedule}.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in fields.items()]
        short = Path(scratch) / "recipe.toml"
        short.write_text("\n".join(lines) + "\n")
        summary_ = pretrain(short, progress=False)
        records = read_metrics(summary_.run_dir / "metrics.jsonl")
    return statistics.median(r.tokens_per_second for r in records[1:])  # the first step warms up


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", type=Path, default=Path("recipes/pretrain-tiny.toml"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pretrain-steps", type=int, default=20)
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    loader_settings = dict(
        seq_len=recipe.data.seq_len, batch_size=recipe.train.batch_size, seed=recipe.data.seed
    )
    ours, ours_step = openk2_step(recipe, PackedSequenceLoader(recipe.data.shards_dir, **loader_settings))
    reference_step, n_muon, n_adamw = transformers_step(
        recipe, PackedSequenceLoader(recipe.data.shards_dir, **loader_settings), ours
    )
    seconds = time_alternating({"openk2": ours_step, "transformers": reference_step}, args.repeats)
    end_to_end = pretrain_tokens_per_second(args.recipe, args.pretrain_steps)
    peak = fp32_gemm_peak_flops()

    config = recipe.model_config_k2()
    tokens = recipe.train.batch_size * recipe.train.grad_accum * recipe.data.seq_len
    flops = training_flops_per_token(config, recipe.data.seq_len)
    table = Table(
        title=f"train bench: {args.recipe} ({recipe.model.preset}), {recipe.train.grad_accum} x "
        f"{recipe.train.batch_size} x {recipe.data.seq_len} tokens per step, fp32, {torch.get_num_threads()} threads"
    )
    for column in ("tokens/s per optimizer step", "openk2", "transformers + torch Muon/AdamW", "ratio"):
        table.add_column(column, justify="right")
    (ours_min, ours_med), (ref_min, ref_med) = summary(seconds["openk2"]), summary(seconds["transformers"])
    table.add_row(
        "best", f"{tokens / ours_min:,.0f}", f"{tokens / ref_min:,.0f}", f"{ref_min / ours_min:.2f}x"
    )
    table.add_row(
        "median", f"{tokens / ours_med:,.0f}", f"{tokens / ref_med:,.0f}", f"{ref_med / ours_med:.2f}x"
    )
    table.add_row(
        "best, share of fp32 GEMM peak",
        f"{flops * tokens / ours_min / peak:.0%}",
        f"{flops * tokens / ref_min / peak:.0%}",
        "",
    )
    table.add_row(
        f"`pretrain` end to end, median of {args.pretrain_steps - 1} steps", f"{end_to_end:,.0f}", "", ""
    )
    console = Console()
    console.print(table)
    console.print(
        f"fp32 GEMM peak measured: {peak / 1e9:.1f} GFLOP/s. transformers baseline: torch.optim.Muon on {n_muon} "
        f"2-D hidden matrices (its Newton–Schulz runs in bf16), AdamW on {n_adamw} tensors incl. the 3-D experts."
    )


if __name__ == "__main__":
    main()
