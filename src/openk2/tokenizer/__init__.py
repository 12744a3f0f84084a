"""K2's tokenizer (report §2.3 and the released tokenizer): the pre-tokenisation pattern, byte-level BPE
training, and the reserved special-token table laid out at the top of a vocabulary of any size."""

from openk2.tokenizer.bpe import (
    K2_PRETOKENIZE_PATTERN,
    k2_pre_tokenizer,
    load_tokenizer,
    plain_text_tokenizer,
    train_k2_tokenizer,
)
from openk2.tokenizer.special_tokens import (
    BOS,
    EOS,
    NUM_RESERVED_TOKENS,
    ReservedToken,
    first_reserved_id,
    reserved_tokens,
    special_token_id,
)

__all__ = [
    "BOS",
    "EOS",
    "K2_PRETOKENIZE_PATTERN",
    "NUM_RESERVED_TOKENS",
    "ReservedToken",
    "first_reserved_id",
    "k2_pre_tokenizer",
    "load_tokenizer",
    "plain_text_tokenizer",
    "reserved_tokens",
    "special_token_id",
    "train_k2_tokenizer",
]
