from __future__ import annotations

from pathlib import Path

import pytest

from openk2.data.shards import TOKENIZER_NAME, Manifest
from openk2.tokenizer.bpe import load_tokenizer
from openk2.tokenizer.special_tokens import reserved_tokens, special_token_id
from tests.data.small_corpus import SMALL_VOCAB

# K2's released added_tokens_decoder (tokenizer_config.json): id, content, special
K2_RELEASED = [
    (163584, "[BOS]", True),
    (163585, "[EOS]", True),
    (163586, "<|im_end|>", True),
    (163587, "<|im_user|>", True),
    (163588, "<|im_assistant|>", True),
    (163590, "<|start_header_id|>", True),
    (163591, "<|end_header_id|>", True),
    (163593, "[EOT]", True),
    (163594, "<|im_system|>", True),
    (163595, "<|tool_calls_section_begin|>", False),
    (163596, "<|tool_calls_section_end|>", False),
    (163597, "<|tool_call_begin|>", False),
    (163598, "<|tool_call_argument_begin|>", False),
    (163599, "<|tool_call_end|>", False),
    (163601, "<|im_middle|>", True),
    (163838, "[UNK]", True),
    (163839, "[PAD]", True),
]


def test_at_k2_vocab_size_the_table_reproduces_the_released_ids_and_flags() -> None:
    by_id = {token.id: token for token in reserved_tokens(163_840)}
    for token_id, content, special in K2_RELEASED:
        assert (by_id[token_id].content, by_id[token_id].special) == (content, special)
    assert by_id[163589].content == "<|reserved_token_163589|>"


def test_tiny_vocab_keeps_k2_offsets_in_its_top_256_ids() -> None:
    expected = {content: token_id - 163_584 + 8192 - 256 for token_id, content, _ in K2_RELEASED}
    assert expected["[BOS]"] == 7936 and expected["[PAD]"] == 8191
    assert {content: special_token_id(content, 8192) for content in expected} == expected


def test_every_reserved_slot_has_one_distinct_name() -> None:
    tokens = reserved_tokens(8192)
    assert [token.id for token in tokens] == list(range(7936, 8192))
    assert len({token.content for token in tokens}) == 256
    named = {content for _, content, _ in K2_RELEASED}
    for token in tokens:
        if token.content not in named:
            assert token.content == f"<|reserved_token_{token.id}|>" and token.special


def test_a_vocab_without_room_below_the_reserved_block_is_rejected() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        reserved_tokens(512)
    with pytest.raises(KeyError, match="not a named K2 special token"):
        special_token_id("<|im_start|>", 8192)


def test_trained_tokenizer_maps_each_reserved_token_to_its_single_id(
    small_shards: tuple[Path, Manifest],
) -> None:
    shards_dir, manifest = small_shards
    tokenizer = load_tokenizer(shards_dir / TOKENIZER_NAME)
    assert tokenizer.get_vocab_size() == SMALL_VOCAB
    added = tokenizer.get_added_tokens_decoder()
    for token in reserved_tokens(SMALL_VOCAB):
        assert tokenizer.encode(token.content).ids == [token.id]
        assert tokenizer.decode([token.id], skip_special_tokens=False) == token.content
        assert (added[token.id].content, added[token.id].special) == (token.content, token.special)
    assert (manifest.bos_id, manifest.eos_id) == (SMALL_VOCAB - 256, SMALL_VOCAB - 255)
    wrapped = tokenizer.encode("<|im_user|>user<|im_middle|>hi<|im_end|>").ids
    assert wrapped[0] == special_token_id("<|im_user|>", SMALL_VOCAB)
    assert wrapped[-1] == special_token_id("<|im_end|>", SMALL_VOCAB)
