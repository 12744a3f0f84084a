"""Training throughput: `openk2 pretrain`'s step vs a plain transformers DeepseekV3 loop, same config and data.

openk2: exactly the functions `openk2.train.train` calls per step — grad_accum forward/backward micro-batches
with expert-load counting, global-norm clipping, MuonClip (Muon + AdamW + QK-Clip with max-logit recording),
the WSD schedule and the expert-bias update.
transformers: DeepseekV3ForCausalLM (same weights) with torch.optim.Muon on the 2-D hidden matrices and AdamW on
everything else — including the fused 3-D expert tensors, which torch.optim.Muon rejects — and the same clipping.
Both read the same batches from the recipe's shards; they alternate in one process (min and median of N).
A short real `pretrain` run adds its end-to-end median tokens/s (validation and checkpoints excluded).

--pipeline N: pipeline parallelism on N CPU processes (torchrun, gloo, one thread each) against data
parallelism (FSDP2) on the same N processes and the same global batch, through the loop's own step
(`split_from_outside`, `Trained.forward_backward`, `Trained.optimizer_step`), layouts alternating in one
launch. Beside tokens/s: the measured bubble fraction, a stage's idle time over the schedule's wall time
(idle = wall − time in the stages' forward, loss and backward), mean over ranks, and the schedule's
theoretical (pp − 1) / (v·m + pp − 1) for m micro-batches and v virtual stages per rank.
Usage: python bench/train.py [--recipe recipes/pretrain-tiny.toml] [--repeats 7] [--pretrain-steps 20]
       python bench/train.py --pipeline 2 [--microbatches 4] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
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
from openk2.train.batch import TokenBatch
from openk2.train.loop import (
    Trained,
    build_optimizer,
    clip_grad_norm_,
    forward_backward,
    global_token_counts,
    split_from_outside,
)
from openk2.train.metrics import read_metrics
from openk2.train.recipe import ParallelSection, Recipe
from openk2.train.world import World, join_world


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


PIPELINE_SEQ_LEN, PIPELINE_SEQUENCES = 128, 16  # the global batch of one step (random tokens)


def pipeline_layouts(processes: int, microbatches: int) -> dict[str, ParallelSection]:
    return {
        f"pp={processes} 1F1B": ParallelSection(pp=processes, microbatches=microbatches),
        f"pp={processes} Interleaved1F1B v=2": ParallelSection(
            pp=processes, schedule="Interleaved1F1B", virtual_stages=2, microbatches=microbatches
        ),
        f"dp={processes} FSDP2 (baseline)": ParallelSection(dp=processes),
    }


def timed_stage_work(trained: Trained, busy: list[float]) -> None:
    """Add the seconds this rank's stages spend computing (forward, loss, backward) to busy[0]."""
    assert trained.pipeline is not None
    for schedule in trained.pipeline._schedules.values():
        stages = getattr(schedule, "_stages", None) or [schedule._stage]
        timed: list[tuple[object, str]] = [
            (stage, name) for stage in stages for name in ("forward_one_chunk", "backward_one_chunk")
        ]
        for owner, name in [*timed, (schedule, "_compute_loss")]:
            setattr(owner, name, _adding_time(getattr(owner, name), busy))


def _adding_time(work: Callable, busy: list[float]) -> Callable:
    def run(*args, **kwargs):
        started = time.perf_counter()
        try:
            return work(*args, **kwargs)
        finally:
            busy[0] += time.perf_counter() - started

    return run


StepTimes = tuple[float, float, float]  # seconds: the optimizer step, its schedule part, stage compute in it


def layout_step(recipe: Recipe, world: World) -> Callable[[int], StepTimes]:
    """One optimizer step of `recipe`'s [parallel] layout on this rank, timed; the argument seeds its batch."""
    import torch.distributed as dist

    config, parallel = recipe.model_config_k2(), recipe.parallel
    torch.manual_seed(0)
    trained = split_from_outside(K2ForCausalLM(config), recipe, world)
    optimizer = build_optimizer(trained.model, recipe, trained.groups.data)
    expert_load = ExpertLoad(trained.model.moe_modules())
    autocast = torch.autocast("cpu", enabled=False)
    shard, shards = world.data_shard(parallel.pp)
    busy = [0.0]

    def step(seed: int) -> StepTimes:
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(
            0, config.vocab_size, (PIPELINE_SEQUENCES, PIPELINE_SEQ_LEN), generator=generator
        )
        micro_batches = [TokenBatch.of(tokens.chunk(shards)[shard])]
        dist.barrier()
        started = time.perf_counter()
        busy[0] = 0.0
        _, predicted = global_token_counts(micro_batches, world, trained.groups.data)
        trained.forward_backward(
            micro_batches, autocast, expert_load, predicted / shards, torch.device("cpu")
        )
        schedule = time.perf_counter() - started
        trained.optimizer_step(optimizer, recipe, world, expert_load)
        return time.perf_counter() - started, schedule, busy[0]

    step(0)  # warm-up; builds the pipeline schedule, whose stages are then timed
    if trained.pipeline is not None:
        timed_stage_work(trained, busy)
    return step


def pipeline_worker(recipe: Recipe, processes: int, microbatches: int, repeats: int, result: Path) -> None:
    """One torchrun rank: every layout's step, alternating, `repeats` rounds after one warm-up step."""
    import torch.distributed as dist

    world = join_world()
    torch.set_num_threads(1)
    steps = {}
    for name, parallel in pipeline_layouts(processes, microbatches).items():
        train = recipe.train.model_copy(
            update={"batch_size": PIPELINE_SEQUENCES // parallel.dp, "grad_accum": 1}
        )
        steps[name] = layout_step(recipe.model_copy(update={"parallel": parallel, "train": train}), world)
    samples: dict[str, list[StepTimes]] = {name: [] for name in steps}
    for round_ in range(1, repeats + 1):
        for name, step in steps.items():
            samples[name].append(step(round_))
    every_rank: list[object] = [None] * world.world_size
    dist.all_gather_object(every_rank, samples)
    if world.is_main:
        result.write_text(json.dumps(every_rank))
    dist.barrier()
    os._exit(0)  # skip interpreter teardown (gloo threads)


def pipeline_bench(args: argparse.Namespace) -> None:
    """Launch `pipeline_worker` on --pipeline processes and print the table."""
    recipe = load_recipe(args.recipe)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "pipeline.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.pipeline}",
        ]
        worker = [__file__, "--recipe", str(args.recipe), "--repeats", str(args.repeats)]
        worker += [
            "--microbatches",
            str(args.microbatches),
            "--pipeline-worker",
            str(result),
            "--pipeline",
            str(args.pipeline),
        ]
        subprocess.run([*command, *worker], env=env, check=True)
        ranks = json.loads(result.read_text())
    layouts = pipeline_layouts(args.pipeline, args.microbatches)
    tokens = PIPELINE_SEQUENCES * PIPELINE_SEQ_LEN
    # a step ends when its slowest rank does: per round, the largest time over ranks; [0] the optimizer step,
    # [1] its forward and backward (the schedule)
    seconds = [
        {name: [max(rank[name][r][part] for rank in ranks) for r in range(args.repeats)] for name in layouts}
        for part in (0, 1)
    ]
    step_seconds, schedule_seconds = seconds
    dp = next(name for name in layouts if name.startswith("dp"))
    table = Table(
        title=f"pipeline bench: {recipe.model.preset} preset, {PIPELINE_SEQUENCES} × {PIPELINE_SEQ_LEN} tokens per step, "
        f"{args.pipeline} CPU processes × 1 thread, {args.microbatches} micro-batches, {args.repeats} rounds"
    )
    for column in (
        "layout",
        "tokens/s best",
        "tokens/s median",
        "vs dp (median)",
        "fwd+bwd vs dp (median)",
        "bubble measured (median)",
        "bubble theoretical",
    ):
        table.add_column(column, justify="right")
    for name, parallel in layouts.items():
        best, median = min(step_seconds[name]), statistics.median(step_seconds[name])
        measured = theoretical = "—"
        if parallel.pp > 1:
            # idle share of the schedule's wall time, per rank and round; the mean over ranks per round
            idle = [
                statistics.mean(1 - rank[name][r][2] / rank[name][r][1] for rank in ranks)
                for r in range(args.repeats)
            ]
            measured = f"{statistics.median(idle):.0%}"
            stages_per_rank, pp = parallel.virtual_stages, parallel.pp
            theoretical = f"{(pp - 1) / (stages_per_rank * parallel.microbatches + pp - 1):.0%}"
        table.add_row(
            name,
            f"{tokens / best:,.0f}",
            f"{tokens / median:,.0f}",
            f"{statistics.median(step_seconds[dp]) / median:.2f}×",
            f"{statistics.median(schedule_seconds[dp]) / statistics.median(schedule_seconds[name]):.2f}×",
            measured,
            theoretical,
        )
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", type=Path, default=Path("recipes/pretrain-tiny.toml"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pretrain-steps", type=int, default=20)
    parser.add_argument("--pipeline", type=int, default=0, help="pipeline vs data parallelism on N processes")
    parser.add_argument("--microbatches", type=int, default=4, help="pipeline micro-batches per step")
    parser.add_argument("--pipeline-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline_worker is not None:
        return pipeline_worker(
            load_recipe(args.recipe), args.pipeline, args.microbatches, args.repeats, args.pipeline_worker
        )
    if args.pipeline:
        return pipeline_bench(args)

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
