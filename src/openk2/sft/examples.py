"""A conversation as training tokens: K2's rendering with the assistant mask, cut to the context by whole turns.

Tokens come from `openk2.chat.render_tokens`, the one place that renders training sequences: every message is
closed by `<|im_end|>`, and the mask is True on exactly what the assistant wrote (content, tool calls, its
closing `<|im_end|>`). A turn is a user message and everything up to the next one. A conversation longer than
the context keeps its longest prefix of whole turns that fits and holds an assistant message; when even the
first turn is too long it is dropped. Both are counted (`truncated`, `too_long`), never silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from openk2.chat import render_tokens
from openk2.chat.template import DeclarationStyle, TemplateName
from openk2.sft.conversation import Conversation


@dataclass(frozen=True)
class TrainingExample:
    ids: np.ndarray  # [tokens] int64
    assistant_mask: np.ndarray  # [tokens] bool: the loss is on these tokens
    truncated: bool  # later turns were cut to fit the context

    def __len__(self) -> int:
        return len(self.ids)


def turn_boundaries(conversation: Conversation) -> list[int]:
    """Message counts of the prefixes that end a whole turn and hold an assistant message, longest first."""
    messages = conversation.messages
    first_assistant = next(i for i, message in enumerate(messages) if message.role == "assistant")
    cuts = [
        index for index, message in enumerate(messages) if message.role == "user" and index > first_assistant
    ]
    return [len(messages), *reversed(cuts)]


def training_example(
    tokenizer: Tokenizer,
    conversation: Conversation,
    seq_len: int,
    template: TemplateName,
    declaration_style: DeclarationStyle,
) -> TrainingExample | None:
    """The conversation's tokens and loss mask within seq_len tokens; None when no whole turn fits."""
    for kept in turn_boundaries(conversation):
        ids, mask = render_tokens(
            tokenizer,
            conversation.messages[:kept],
            conversation.tools,
            template=template,
            declaration_style=declaration_style,
        )
        if len(ids) <= seq_len:
            truncated = kept < len(conversation.messages)
            return TrainingExample(np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=bool), truncated)
    return None
