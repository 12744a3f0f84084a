"""K2's reserved special tokens, laid out at the top of a vocabulary of any size.

K2's released tokenizer reserves the 256 ids after its 163,584 BPE tokens and names some of them in
`added_tokens_decoder`. OpenK2 keeps that layout at every scale: the top 256 ids of a vocabulary of size V
are reserved, and a named token sits at the same offset from V - 256 as it does from 163,584 in K2.
"""

from __future__ import annotations

from dataclasses import dataclass

NUM_RESERVED_TOKENS = 256
K2_NUM_BASE_TOKENS = 163_584

BOS = "[BOS]"
EOS = "[EOS]"
IM_END = "<|im_end|>"
IM_USER = "<|im_user|>"
IM_ASSISTANT = "<|im_assistant|>"
START_HEADER_ID = "<|start_header_id|>"
END_HEADER_ID = "<|end_header_id|>"
EOT = "[EOT]"
IM_SYSTEM = "<|im_system|>"
TOOL_CALLS_SECTION_BEGIN = "<|tool_calls_section_begin|>"
TOOL_CALLS_SECTION_END = "<|tool_calls_section_end|>"
TOOL_CALL_BEGIN = "<|tool_call_begin|>"
TOOL_CALL_ARGUMENT_BEGIN = "<|tool_call_argument_begin|>"
TOOL_CALL_END = "<|tool_call_end|>"
IM_MIDDLE = "<|im_middle|>"
UNK = "[UNK]"
PAD = "[PAD]"

# (offset from the first reserved id, K2's "special" flag): the tool-call markers are plain added tokens in K2
K2_NAMED_TOKENS: dict[str, tuple[int, bool]] = {
    BOS: (0, True),
    EOS: (1, True),
    IM_END: (2, True),
    IM_USER: (3, True),
    IM_ASSISTANT: (4, True),
    START_HEADER_ID: (6, True),
    END_HEADER_ID: (7, True),
    EOT: (9, True),
    IM_SYSTEM: (10, True),
    TOOL_CALLS_SECTION_BEGIN: (11, False),
    TOOL_CALLS_SECTION_END: (12, False),
    TOOL_CALL_BEGIN: (13, False),
    TOOL_CALL_ARGUMENT_BEGIN: (14, False),
    TOOL_CALL_END: (15, False),
    IM_MIDDLE: (17, True),
    UNK: (254, True),
    PAD: (255, True),
}


@dataclass(frozen=True)
class ReservedToken:
    id: int
    content: str
    special: bool


def first_reserved_id(vocab_size: int) -> int:
    """The id of `[BOS]`: everything from here to vocab_size - 1 is reserved."""
    if vocab_size <= 2 * NUM_RESERVED_TOKENS:
        raise ValueError(
            f"vocab_size: {vocab_size} leaves no room for the 256-token byte alphabet below the "
            f"{NUM_RESERVED_TOKENS} reserved ids; expected > {2 * NUM_RESERVED_TOKENS}"
        )
    return vocab_size - NUM_RESERVED_TOKENS


def reserved_tokens(vocab_size: int) -> list[ReservedToken]:
    """All 256 reserved tokens in id order; unnamed slots are `<|reserved_token_{id}|>` as K2 names them."""
    first_id = first_reserved_id(vocab_size)
    named_by_offset = {offset: (content, special) for content, (offset, special) in K2_NAMED_TOKENS.items()}
    tokens = []
    for offset in range(NUM_RESERVED_TOKENS):
        content, special = named_by_offset.get(offset, (f"<|reserved_token_{first_id + offset}|>", True))
        tokens.append(ReservedToken(id=first_id + offset, content=content, special=special))
    return tokens


def special_token_id(content: str, vocab_size: int) -> int:
    """The id of a named K2 token (e.g. `[EOS]`, `<|im_end|>`) in a vocabulary of size vocab_size."""
    if content not in K2_NAMED_TOKENS:
        raise KeyError(f"{content!r} is not a named K2 special token; known: {sorted(K2_NAMED_TOKENS)}")
    offset, _ = K2_NAMED_TOKENS[content]
    return first_reserved_id(vocab_size) + offset
