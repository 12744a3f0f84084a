"""Supervised batches mixed into RL's optimizer steps: the PTX loss and the critic's closed-loop data.

PTX (K2 report §3.2.3, after InstructGPT): a language-modelling loss on a curated set keeps RL from
forgetting what SFT taught and from over-fitting the RL tasks. The set is read exactly as `openk2 sft` reads
its sources (same kinds, checks, loss mask and packing), and its loader's position is saved with the RL
checkpoints.

Critic refinement (§3.2.2): the preference records that earlier iterations wrote from verified pairs
(`critic_data.jsonl`) become judging conversations in both orders, packed like SFT's, for an optional
supervised loss on the critic's verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

from openk2.rl.recipe import PTXSection
from openk2.sft.conversation import Conversation
from openk2.sft.dataset import build_sft_data
from openk2.sft.examples import training_example
from openk2.sft.loader import ConversationLoader
from openk2.sft.packing import pack_rows
from openk2.sft.preference import PreferenceRecord, preference_conversations
from openk2.sft.recipe import SFTRecipe, SFTSection
from openk2.tokenizer.special_tokens import PAD
from openk2.train.batch import TokenBatch
from openk2.train.world import World


def ptx_loader(section: PTXSection, tokenizer: Tokenizer, world: World) -> ConversationLoader:
    """The PTX set's packed rows, resumable, this rank's share."""
    sft = SFTSection(sources=section.sources, seq_len=section.seq_len, seed=section.seed)
    # build_sft_data reads nothing of its recipe but the [sft] section
    data = build_sft_data(SFTRecipe.model_construct(sft=sft), tokenizer)
    return ConversationLoader(
        data.train,
        [source.weight for source in section.sources],
        seq_len=section.seq_len,
        batch_size=section.batch_size,
        seed=section.seed,
        pad_id=tokenizer.token_to_id(PAD) or 0,
        data_sha256=data.sha256,
        rank=world.rank,
        world_size=world.world_size,
    )


def critic_batch(
    records: Sequence[PreferenceRecord], tokenizer: Tokenizer, seq_len: int, world: World
) -> TokenBatch | None:
    """Both orders of each record as packed judging conversations (this rank's rows); None when none fit."""
    examples = []
    for record in records:
        for messages in preference_conversations(record):
            conversation = Conversation(messages, [], origin="critic_data", split_key=record.id or "")
            example = training_example(tokenizer, conversation, seq_len, "k2-0905", "json")
            if example is not None:
                examples.append(example)
    mine = examples[world.rank :: world.world_size]
    if not mine:
        return None
    rows = [[example] for example in mine]
    return pack_rows(rows, max(len(example) for example in mine), tokenizer.token_to_id(PAD) or 0)
