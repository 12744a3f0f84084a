"""The K2-style tokenizer: byte-level BPE behind K2's pre-tokenisation regex, K2's reserved ids on top.

K2's released tokenizer is tiktoken BPE; OpenK2 trains the same kind of tokenizer with HF `tokenizers`,
whose Oniguruma engine accepts K2's pattern verbatim (`\\p{Han}`, `&&` class intersection, `(?i:...)`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from openk2.tokenizer.special_tokens import NUM_RESERVED_TOKENS, first_reserved_id, reserved_tokens

# K2's `pat_str` from the released tokenization_kimi.py, one alternative per line
K2_PRETOKENIZE_PATTERN = "|".join(
    [
        r"[\p{Han}]+",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)


def k2_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Split text into K2's regex pieces, then map each piece's UTF-8 bytes to byte-level symbols."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(K2_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def train_k2_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train byte-level BPE for the ids below the reserved block, then add K2's 256 reserved tokens on top."""
    num_bpe_ids = first_reserved_id(vocab_size)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = k2_pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=num_bpe_ids,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    learned = tokenizer.get_vocab_size()
    if learned != num_bpe_ids:
        raise ValueError(
            f"vocab_size: BPE learned only {learned} tokens from this corpus but {num_bpe_ids} are needed "
            f"below the {NUM_RESERVED_TOKENS} reserved ids; lower vocab_size or use a larger corpus"
        )
    # one token per call keeps ids in table order while keeping K2's per-token special flag
    for token in reserved_tokens(vocab_size):
        tokenizer.add_tokens([AddedToken(token.content, special=token.special, normalized=False)])
        assigned = tokenizer.token_to_id(token.content)
        if assigned != token.id:
            raise RuntimeError(f"reserved token {token.content}: expected id {token.id}, got {assigned}")
    return tokenizer


def plain_text_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    """The same BPE without the reserved tokens, so corpus text that spells `[EOS]` stays ordinary text.

    `encode_special_tokens=True` is not enough: it leaves K2's non-special tool-call markers matchable.
    """
    definition = json.loads(tokenizer.to_str())
    definition["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(definition))


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a saved `tokenizer.json`, naming the file if it cannot be read."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:
        raise ValueError(f"{path}: not a readable HF tokenizers file ({error})") from error
