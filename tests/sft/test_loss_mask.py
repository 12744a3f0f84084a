"""The SFT loss is on exactly the assistant's tokens: decode the labelled runs of a packed row of a multi-turn
tool dialogue and compare them with the assistant parts written out in K2's wire format."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer

from openk2.chat import validate_messages, validate_tools
from openk2.sft.conversation import Conversation
from openk2.sft.examples import training_example
from openk2.sft.packing import pack_rows
from openk2.train.batch import IGNORE_INDEX, PADDING_DOCUMENT
from tests.chat.chat_dialogues import TOOLS, WEATHER_DIALOGUE
from tests.chat.tiny_tokenizer import tiny_tokenizer


def wire_format(message: dict) -> str:
    """An assistant message as K2 reads it (report App. B), written out from the format, not the renderer."""
    calls = "".join(
        f"<|tool_call_begin|>{call['id']}<|tool_call_argument_begin|>{call['function']['arguments']}<|tool_call_end|>"
        for call in message.get("tool_calls") or []
    )
    section = f"<|tool_calls_section_begin|>{calls}<|tool_calls_section_end|>" if calls else ""
    return f"{message.get('content') or ''}{section}<|im_end|>"


SHORT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return tiny_tokenizer()


def _conversation(messages: list[dict], tools: list[dict]) -> Conversation:
    return Conversation(validate_messages(messages), validate_tools(tools), "test:1", "key")


def _labelled_runs(labels: torch.Tensor) -> list[list[int]]:
    runs: list[list[int]] = []
    previous_labelled = False
    for label in labels.tolist():
        labelled = label != IGNORE_INDEX
        if labelled and not previous_labelled:
            runs.append([])
        if labelled:
            runs[-1].append(label)
        previous_labelled = labelled
    return runs


@pytest.mark.parametrize("template", ["k2-0905", "k2-0711"])
def test_labels_of_a_packed_row_are_exactly_the_assistant_parts(tokenizer: Tokenizer, template: str) -> None:
    dialogues = [(WEATHER_DIALOGUE, TOOLS), (SHORT, [])]
    examples = [
        training_example(tokenizer, _conversation(messages, tools), 1024, template, "json")
        for messages, tools in dialogues
    ]
    assert all(example is not None and not example.truncated for example in examples)
    seq_len = sum(len(example) for example in examples) + 5
    batch = pack_rows([examples], seq_len, pad_id=0)
    decoded = [tokenizer.decode(run, skip_special_tokens=False) for run in _labelled_runs(batch.labels[0])]
    expected = [wire_format(m) for messages, _ in dialogues for m in messages if m["role"] == "assistant"]
    assert decoded == expected
    assert expected[0].startswith(
        "Let me check.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
    )
    # everything else is in the row but unlabelled: the system prompt, users, tool results, headers, padding
    first, second = len(examples[0]), len(examples[1])
    assert batch.input_ids[0, :first].tolist() == examples[0].ids.tolist()
    assert batch.document_ids[0].tolist() == [0] * first + [1] * second + [PADDING_DOCUMENT] * 5
    assert batch.position_ids[0].tolist() == [*range(first), *range(second), *[0] * 5]
    assert batch.predicted_tokens == sum(len(run) for run in _labelled_runs(batch.labels[0]))
    assert batch.num_tokens == first + second


def test_an_empty_row_is_padding_without_labels(tokenizer: Tokenizer) -> None:
    example = training_example(tokenizer, _conversation(SHORT, []), 64, "k2-0905", "json")
    batch = pack_rows([[example], []], 64, pad_id=7)
    assert batch.input_ids.shape == (2, 64)
    assert (batch.labels[1] == IGNORE_INDEX).all() and (batch.document_ids[1] == PADDING_DOCUMENT).all()
    assert (batch.input_ids[1] == 7).all()
