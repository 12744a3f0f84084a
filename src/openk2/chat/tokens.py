"""The special tokens of K2's chat format, by the names of the released tokenizer (docs/architecture.md, chat).

Code refers to tokens by name so that it works with any tokenizer that has them; the ids of our
own small tokenizers live beside the names in `openk2.tokenizer.special_tokens`, the one table. The report's App. B writes some of them differently
(`<|im_begin|>`, `<|tool_arguments_begin|>`); the released names are the ones the model saw.
"""

from openk2.tokenizer.special_tokens import (
    IM_ASSISTANT,
    IM_END,
    IM_MIDDLE,
    IM_SYSTEM,
    IM_USER,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALL_END,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
)

TOOL_CALL_MARKUP = (
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
    TOOL_CALL_BEGIN,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_END,
)
CHAT_TOKENS = (IM_SYSTEM, IM_USER, IM_ASSISTANT, IM_MIDDLE, IM_END, *TOOL_CALL_MARKUP)
