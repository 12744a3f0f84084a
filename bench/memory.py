"""Activation memory switches (K2 report §2.4) on one model: saved-activation bytes, step time, loss after N steps.

Every combination starts from the same initial weights and trains on the same batches: the first --steps
batches of the corpus shards when --shards holds them (`openk2 tokenize --recipe recipes/pretrain-tiny.toml` writes
runs/pretrain-tiny/data), else a seeded pool of uniformly random token ids, cycled, so the loss falls by memorisation.
The loss noise floor: the plain model trained from weights × (1 + 1e-7·N(0,1)), three draws; training is
chaotic, so rounding-sized differences grow over the steps, and a switch agrees "to noise" within that spread.
Saved bytes are what autograd holds after one forward, counted by `count_saved_activations` after the memory
hooks (each storage once, weights excluded), per token, split into the decoder layers and the rest (embedding,
final norm, lm_head and the loss's log-softmax). Offloaded bytes are in host memory: on a GPU they leave the
device; on this CPU-only machine they stay in the same RAM. Step time: forward + backward, all combinations
alternating in one process (min and median of N). The optimizer is AdamW, the same for every combination.
Usage: python bench/memory.py [--preset tiny] [--batch 4] [--seq-len 128] [--steps 50] [--shards runs/pretrain-tiny/data]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from common import summary, time_alternating
from rich.console import Console
from rich.table import Table

from openk2.data import PackedSequenceLoader
from openk2.model import K2Config, K2ForCausalLM
from openk2.train.memory import (
    SavedActivationLedger,
    apply_memory_policy,
    count_saved_activations,
)
from openk2.train.recipe import MemorySection

COMBINATIONS: dict[str, MemorySection] = {
    "none": MemorySection(),
    "recompute": MemorySection(recompute=True),
    "recompute + moe down": MemorySection(recompute=True, recompute_moe_down_proj=True),
    "fp8": MemorySection(fp8=True),
    "offload": MemorySection(offload=True),
    "fp8 + recompute": MemorySection(recompute=True, fp8=True),
    "fp8 + recompute + moe down": MemorySection(recompute=True, recompute_moe_down_proj=True, fp8=True),
    "all four": MemorySection(recompute=True, recompute_moe_down_proj=True, fp8=True, offload=True),
}


def saved_activations(model: K2ForCausalLM, tokens: torch.Tensor) -> SavedActivationLedger:
    """One forward's saved activations, with bytes attributed to the decoder layers or to the rest."""
    with count_saved_activations(model) as ledger:

        def enter_layer(module: torch.nn.Module, args: object) -> None:
            ledger.scope = "layers"

        def leave_layer(module: torch.nn.Module, args: object, output: object) -> None:
            ledger.scope = "rest"

        ledger.scope = "rest"
        handles = [layer.register_forward_pre_hook(enter_layer) for layer in model.model.layers]
        handles += [layer.register_forward_hook(leave_layer) for layer in model.model.layers]
        loss = model(tokens, labels=tokens).loss
        for handle in handles:
            handle.remove()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return ledger


def final_loss(model: K2ForCausalLM, batches: list[torch.Tensor], steps: int, lr: float) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        tokens = batches[step % len(batches)]
        loss = model(tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.item()


def perturbed(model: K2ForCausalLM, generator: torch.Generator) -> K2ForCausalLM:
    """A copy with every weight × (1 + 1e-7·N(0,1)): a rounding-sized difference, to measure the noise floor."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in copied.parameters():
            parameter.mul_(1 + 1e-7 * torch.randn(parameter.shape, generator=generator))
    return copied


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--shards", type=Path, default=Path("runs/pretrain-tiny/data"))
    parser.add_argument("--distinct-batches", type=int, default=4, help="random tokens: the pool size")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="1: the machine's 2 cores are shared")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = K2Config.preset(args.preset)
    torch.manual_seed(0)
    initial = K2ForCausalLM(config)
    generator = torch.Generator().manual_seed(1)
    if (args.shards / "manifest.json").exists():
        loader = PackedSequenceLoader(args.shards, seq_len=args.seq_len, batch_size=args.batch, seed=0)
        batches = [next(loader) for _ in range(args.steps)]
        data = f"the first {args.steps} batches of {args.shards}"
    else:
        batches = [
            torch.randint(0, config.vocab_size, (args.batch, args.seq_len), generator=generator)
            for _ in range(args.distinct_batches)
        ]
        data = f"{args.distinct_batches} batches of random tokens, cycled"
    tokens_per_batch = args.batch * args.seq_len

    models = {
        name: apply_memory_policy(copy.deepcopy(initial), switches) for name, switches in COMBINATIONS.items()
    }
    ledgers = {name: saved_activations(model, batches[0]) for name, model in models.items()}

    def train_step(model: K2ForCausalLM) -> None:
        model(batches[0], labels=batches[0]).loss.backward()
        model.zero_grad(set_to_none=True)

    seconds = time_alternating(
        {name: lambda m=model: train_step(m) for name, model in models.items()}, args.repeats
    )
    losses = {name: final_loss(model, batches, args.steps, args.lr) for name, model in models.items()}
    noise = max(
        abs(final_loss(perturbed(initial, generator), batches, args.steps, args.lr) - losses["none"])
        for _ in range(3)
    )

    table = Table(
        title=f"activation memory: preset {args.preset}, batch {args.batch} x {args.seq_len}, fp32, "
        f"{torch.get_num_threads()} threads, {args.steps} AdamW steps (lr {args.lr}) on {data}"
    )
    for column in (
        "switches",
        "saved B/token",
        "vs none",
        "layers B/token",
        "vs none",
        "of which fp8",
        "offloaded",
        "recomputed tensors",
        "fwd+bwd ms (min / med)",
        f"loss @ {args.steps}",
        "Δ loss vs none",
    ):
        table.add_column(column, justify="right")
    none = ledgers["none"]
    for name, ledger in ledgers.items():
        best, median = summary(seconds[name])
        table.add_row(
            name,
            f"{ledger.total_bytes / tokens_per_batch:,.0f}",
            f"{ledger.total_bytes / none.total_bytes:.3f}",
            f"{ledger.bytes_by_scope['layers'] / tokens_per_batch:,.0f}",
            f"{ledger.bytes_by_scope['layers'] / none.bytes_by_scope['layers']:.3f}",
            f"{ledger.bytes['fp8'] / tokens_per_batch:,.0f}",
            f"{ledger.bytes['offloaded'] / tokens_per_batch:,.0f}",
            f"{ledger.tensors['recomputed']}",
            f"{best * 1e3:.0f} / {median * 1e3:.0f}",
            f"{losses[name]:.4f}",
            f"{losses[name] - losses['none']:+.4f}",
        )
    console = Console(width=220)
    console.print(table)
    initial_loss = initial(batches[0], labels=batches[0]).loss.item()
    console.print(
        f"loss at initialisation {initial_loss:.4f}; noise floor: 'none' from weights × (1 + 1e-7·N(0,1)) ends "
        f"up to {noise:.4f} away from 'none' (3 draws). 'offloaded' bytes are in host memory (on a GPU they leave the device; "
        "here device and host are the same RAM); FP8 bytes of offloaded tensors count as offloaded."
    )


if __name__ == "__main__":
    main()
