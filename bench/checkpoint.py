"""Checkpoint saves at dp = 2 and 4: sharded against the whole-on-rank-0 save they replaced.

sharded: what `save_checkpoint` does now, every rank writing its own shards of the model and of MuonClip's
state (`save_sharded`, torch.distributed.checkpoint).
baseline: the earlier save, measured in the same run: whole tensors gathered on rank 0
(`get_*_state_dict(full_state_dict=True, cpu_offload=True)`), which alone writes model.safetensors (HF layout)
and optimizer.pt.
Each world runs this file under torchrun (gloo, one thread per process, FSDP2 over dp) on the `small` preset
with more layers and experts, after one MuonClip step so the optimizer holds its state; the two saves alternate
round after round (min and median of N). "rank 0 holds" is the bytes of the tensors rank 0 has in hand to write:
the gathered state, or its own shards.
Usage: python bench/checkpoint.py [--worlds 2 4] [--rounds 3] [--layers 8] [--experts 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve()


def measure(args: argparse.Namespace) -> None:
    """One torchrun process: build, shard, step once, then time both saves; rank 0 writes the numbers."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    from openk2.model import K2Config
    from openk2.optim import MuonClip
    from openk2.train.checkpoint import FULL_ON_RANK_0
    from openk2.train.device import build_on_device
    from openk2.train.parallel import parallelize
    from openk2.train.recipe import ParallelSection
    from openk2.train.sharded import save_sharded
    from openk2.train.world import join_world

    world = join_world()
    torch.manual_seed(0)
    preset = K2Config.preset("small").model_dump()
    config = K2Config(**{**preset, "num_hidden_layers": args.layers, "n_routed_experts": args.experts})
    model = parallelize(build_on_device(config, torch.device("cpu")), ParallelSection(dp=world.world_size))
    optimizer = MuonClip.from_model(model, lr=1e-3)
    ids = torch.randint(0, config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(world.rank))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    root = Path(args.directory)

    def local_bytes(state: object) -> int:
        if isinstance(state, dict):
            return sum(local_bytes(value) for value in state.values())
        if isinstance(state, list):
            return sum(local_bytes(value) for value in state)
        if isinstance(state, torch.Tensor):
            local = state.to_local() if hasattr(state, "to_local") else state
            return local.numel() * local.element_size()
        return 0

    def baseline() -> int:
        model_state = get_model_state_dict(model, options=FULL_ON_RANK_0)
        optimizer_state = get_optimizer_state_dict(model, optimizer, options=FULL_ON_RANK_0)
        if world.is_main:
            directory = root / "whole"
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            with torch.device("meta"):
                from openk2.model import K2ForCausalLM

                whole = K2ForCausalLM(config)
            whole.load_state_dict(model_state, assign=True)
            whole.save_pretrained(directory)
            torch.save(optimizer_state, directory / "optimizer.pt")
        dist.barrier()
        return local_bytes(model_state) + local_bytes(optimizer_state)

    def sharded() -> int:
        directory = root / "sharded"
        if world.is_main:
            shutil.rmtree(directory, ignore_errors=True)
        dist.barrier()
        save_sharded(model, optimizer, directory)
        dist.barrier()
        return local_bytes(get_model_state_dict(model)) + local_bytes(
            get_optimizer_state_dict(model, optimizer)
        )

    seconds: dict[str, list[float]] = {"baseline": [], "sharded": []}
    held: dict[str, int] = {}
    for round_index in range(args.rounds + 1):  # round 0 warms up
        for name, save in (("baseline", baseline), ("sharded", sharded)):
            dist.barrier()
            started = time.perf_counter()
            held[name] = save()
            if round_index:
                seconds[name].append(time.perf_counter() - started)
    if world.is_main:
        parameters = sum(p.numel() for p in model.parameters())
        written = {name: sum(f.stat().st_size for f in (root / name).rglob("*") if f.is_file())
                   for name in ("whole", "sharded")}  # fmt: skip
        result = dict(seconds=seconds, held=held, parameters=parameters, written=written)
        Path(args.result).write_text(json.dumps(result))
    dist.barrier()


def launch(args: argparse.Namespace) -> None:
    from common import summary
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"checkpoint save, small preset with {args.layers} layers and {args.experts} experts")
    for column in (
        "dp",
        "save",
        "min s",
        "median s",
        "vs baseline (median)",
        "rank 0 holds MB",
        "written MB",
    ):
        table.add_column(column)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    for world_size in args.worlds:
        with tempfile.TemporaryDirectory() as directory:
            result_path = Path(directory) / "result.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
            command += [
                str(world_size),
                str(BENCH),
                "--rounds",
                str(args.rounds),
                "--layers",
                str(args.layers),
            ]
            command += [
                "--experts",
                str(args.experts),
                "--directory",
                directory,
                "--result",
                str(result_path),
            ]
            subprocess.run(command, env=env, check=True)
            result = json.loads(result_path.read_text())
        baseline_median = summary(result["seconds"]["baseline"])[1]
        for name, files in (("baseline", "whole"), ("sharded", "sharded")):
            best, median = summary(result["seconds"][name])
            table.add_row(
                str(world_size),
                "whole on rank 0 (baseline)" if name == "baseline" else "sharded, every rank",
                f"{best:.2f}",
                f"{median:.2f}",
                f"{baseline_median / median:.2f}x",
                f"{result['held'][name] / 2**20:.0f}",
                f"{result['written'][files] / 2**20:.0f}",
            )
    Console().print(table)
    print(f"{result['parameters']:,} parameters; model + MuonClip state, fp32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--experts", type=int, default=32)
    parser.add_argument("--directory", help=argparse.SUPPRESS)  # set for the torchrun processes
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if "WORLD_SIZE" in os.environ:
        measure(args)
    else:
        sys.path.insert(0, str(BENCH.parent))
        launch(args)


if __name__ == "__main__":
    main()
