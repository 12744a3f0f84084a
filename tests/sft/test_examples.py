"""Conversations longer than the context are cut by whole turns, or dropped when not even one turn fits."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from openk2.chat import render_tokens, validate_messages, validate_tools
from openk2.sft.conversation import Conversation
from openk2.sft.examples import training_example, turn_boundaries
from tests.chat.chat_dialogues import TOOLS, WEATHER_DIALOGUE
from tests.chat.tiny_tokenizer import tiny_tokenizer

THREE_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "Clear."},
    {"role": "user", "content": "And Rome?"},
    {"role": "assistant", "content": "Rain."},
    {"role": "user", "content": "Thanks, and what is the weather in Paris and Rome tomorrow?"},
    {"role": "assistant", "content": "Paris is 18C and clear; Rome is 21C with rain."},
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return tiny_tokenizer()


def _conversation(messages: list[dict], tools: list[dict] | None = None) -> Conversation:
    return Conversation(validate_messages(messages), validate_tools(tools or []), "test:1", "key")


def _length(tokenizer: Tokenizer, messages: list[dict], tools: list[dict] | None = None) -> int:
    return len(render_tokens(tokenizer, messages, tools)[0])


def test_turn_boundaries_end_before_each_later_user_message() -> None:
    assert turn_boundaries(_conversation(THREE_TURNS)) == [7, 5, 3]
    assert turn_boundaries(_conversation(WEATHER_DIALOGUE, TOOLS)) == [7]  # one user turn with tool rounds


@pytest.mark.parametrize(("kept", "slack"), [(7, 0), (5, 0), (5, 3), (3, 0)])
def test_the_longest_prefix_of_whole_turns_that_fits_is_kept(
    tokenizer: Tokenizer, kept: int, slack: int
) -> None:
    seq_len = _length(tokenizer, THREE_TURNS[:kept]) + slack
    example = training_example(tokenizer, _conversation(THREE_TURNS), seq_len, "k2-0905", "json")
    ids, mask = render_tokens(tokenizer, THREE_TURNS[:kept])
    assert example.ids.tolist() == ids and example.assistant_mask.tolist() == mask
    assert example.truncated == (kept < len(THREE_TURNS))


def test_a_conversation_whose_first_turn_does_not_fit_is_dropped(tokenizer: Tokenizer) -> None:
    seq_len = _length(tokenizer, THREE_TURNS[:3]) - 1
    assert training_example(tokenizer, _conversation(THREE_TURNS), seq_len, "k2-0905", "json") is None
    tool_turn = _length(tokenizer, WEATHER_DIALOGUE, TOOLS)
    conversation = _conversation(WEATHER_DIALOGUE, TOOLS)
    assert training_example(tokenizer, conversation, tool_turn - 1, "k2-0905", "json") is None
    assert training_example(tokenizer, conversation, tool_turn, "k2-0905", "json") is not None


def test_the_template_version_and_declaration_style_reach_the_rendering(tokenizer: Tokenizer) -> None:
    conversation = _conversation(WEATHER_DIALOGUE, TOOLS)
    for template in ("k2-0905", "k2-0711"):
        for style in ("json", "typescript"):
            example = training_example(tokenizer, conversation, 10_000, template, style)
            ids, _ = render_tokens(
                tokenizer, WEATHER_DIALOGUE, TOOLS, template=template, declaration_style=style
            )
            assert example.ids.tolist() == ids
