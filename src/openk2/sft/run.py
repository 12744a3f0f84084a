"""`openk2 sft`: supervised fine-tuning (K2 report §3.1) on the shared training loop.

The model starts from any OpenK2 checkpoint and trains on the recipe's conversations, packed and mixed, with
the loss on the assistant's tokens only; validation is the same loss on held-out conversations. The run
directory gets, besides the loop's checkpoints, metrics and report, `data_summary.json` (what was read,
held out, skipped, truncated) and `skipped.jsonl` (each unusable record with its file and line).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from openk2.io import atomic_write_text
from openk2.llm import SamplingParams
from openk2.llm.k2_engine import K2Engine
from openk2.model import K2ForCausalLM
from openk2.progress import log_console
from openk2.sft.dataset import DataSummary, SFTData, build_sft_data
from openk2.sft.loader import ConversationLoader, validation_batches
from openk2.sft.recipe import SFTRecipe, load_sft_recipe
from openk2.tokenizer import load_tokenizer
from openk2.tokenizer.special_tokens import PAD
from openk2.train import RunSummary, Stage, TokenBatch, train
from openk2.train.device import resolve_device
from openk2.train.resume import refuse_to_overwrite
from openk2.train.world import join_world

DATA_SUMMARY = "data_summary.json"
SKIPPED = "skipped.jsonl"
PROBLEMS_SHOWN = 10


@dataclass
class SFTRun:
    run: RunSummary
    data: DataSummary


def sft(recipe_path: Path, resume: bool = False, strict: bool = False, progress: bool = True) -> SFTRun:
    """What `openk2 sft --recipe PATH [--resume] [--strict]` runs."""
    recipe = load_sft_recipe(recipe_path)
    refuse_to_overwrite(recipe.run.run_dir, resume)  # before the data files below are written into it
    world = join_world(resolve_device(recipe.train.device))
    console = log_console(quiet=not (progress and world.is_main))
    tokenizer = load_tokenizer(recipe.init.checkpoint / "tokenizer.json")
    data = build_sft_data(recipe, tokenizer, strict)
    for source in data.summary.sources:
        console.print(source.line(), highlight=False, markup=False)
    if world.is_main:
        write_data_files(recipe.run.run_dir, data)
    for problem in data.problems[:PROBLEMS_SHOWN]:
        console.print(f"skipped {problem}", highlight=False, markup=False)
    if len(data.problems) > PROBLEMS_SHOWN:
        console.print(f"... {len(data.problems) - PROBLEMS_SHOWN} more in {recipe.run.run_dir / SKIPPED}")
    summary = train(sft_stage(recipe, tokenizer, data), resume=resume, progress=progress)
    return SFTRun(run=summary, data=data.summary)


def write_data_files(run_dir: Path, data: SFTData) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / DATA_SUMMARY, data.summary.model_dump_json(indent=2))
    skipped = "".join(
        json.dumps({"origin": p.origin, "kind": p.kind, "detail": p.detail}) + "\n" for p in data.problems
    )
    atomic_write_text(run_dir / SKIPPED, skipped)


def sft_stage(recipe: SFTRecipe, tokenizer: Tokenizer, data: SFTData) -> Stage:
    world = join_world(resolve_device(recipe.train.device))
    settings, checkpoint = recipe.sft, recipe.init.checkpoint
    pad_id = tokenizer.token_to_id(PAD) or 0  # never read: padding carries no label and sees no document
    shard, shards = world.data_shard(recipe.parallel.pp)  # the ranks of one pipeline read the same rows
    loader = ConversationLoader(
        data.train,
        [source.weight for source in settings.sources],
        seq_len=settings.seq_len,
        batch_size=recipe.train.batch_size,
        seed=settings.seed,
        pad_id=pad_id,
        data_sha256=data.sha256,
        rank=shard,
        world_size=shards,
    )

    def held_out() -> Iterator[TokenBatch]:
        return validation_batches(
            data.validation,
            seq_len=settings.seq_len,
            batch_size=recipe.train.batch_size,
            pad_id=pad_id,
            rank=shard,
            world_size=shards,
        )

    def sample(final: Path) -> str:
        return chat_sample(final, recipe)

    summary = data.summary
    rows = [(f"data: {source.kind}", source.line()) for source in summary.sources]
    rows.append(
        (
            "records skipped / truncated / too long",
            f"{summary.skipped} / {summary.truncated} / {summary.too_long}",
        )
    )
    return Stage(
        title="SFT",
        recipe=recipe,
        config=recipe.model_config_k2(),
        batches=loader,
        validation_batches=held_out,
        tokenizer=checkpoint / "tokenizer.json",
        initial_weights=checkpoint,
        model_description=f"from {checkpoint}",
        sample=sample if recipe.run.sample_tokens else None,
        report_rows=rows,
    )


def chat_sample(checkpoint: Path, recipe: SFTRecipe) -> str:
    """The final checkpoint's greedy reply to [run].sample_prompt as a user message."""
    engine = K2Engine(
        K2ForCausalLM.from_pretrained(checkpoint),
        load_tokenizer(checkpoint / "tokenizer.json"),
        checkpoint.name,
        template=recipe.sft.template,
    )
    sampling = SamplingParams(temperature=0.0, max_tokens=recipe.run.sample_tokens)
    reply = engine.chat([{"role": "user", "content": recipe.run.sample_prompt}], sampling=sampling)
    calls = "".join(
        f"\n[calls {call.function.name} with {call.function.arguments}]"
        for call in reply.message.tool_calls or []
    )
    return f"user: {recipe.run.sample_prompt}\nassistant: {reply.message.text}{calls}"
