"""A text sample from a checkpoint: the quickest look at what pre-training has learned."""

from __future__ import annotations

from pathlib import Path

import torch

from openk2.model import K2ForCausalLM
from openk2.tokenizer.bpe import load_tokenizer, plain_text_tokenizer
from openk2.tokenizer.special_tokens import BOS, EOS

SAMPLE_TEMPERATURE = 0.8  # below 1: fewer rare-token detours; above 0: no greedy loops
SAMPLE_TOP_P = 0.95


def sample_text(
    checkpoint: Path,
    prompt: str,
    max_new_tokens: int,
    seed: int,
    temperature: float = SAMPLE_TEMPERATURE,
    top_p: float = SAMPLE_TOP_P,
) -> str:
    """Continue `prompt` like the start of a training document ([BOS] first); returns prompt + continuation."""
    model = K2ForCausalLM.from_pretrained(checkpoint).eval()  # first: it names a missing directory as such
    tokenizer = load_tokenizer(checkpoint / "tokenizer.json")
    prompt_ids = [tokenizer.token_to_id(BOS), *plain_text_tokenizer(tokenizer).encode(prompt).ids]
    generator = torch.Generator().manual_seed(seed)
    output = model.generate(
        torch.tensor([prompt_ids]),
        max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        eos_token_id=tokenizer.token_to_id(EOS),
        generator=generator,
    )
    return tokenizer.decode(output[0].tolist(), skip_special_tokens=True)
