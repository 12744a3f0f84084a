"""Test checkpoints, written and loaded exactly as `openk2 pretrain` output is.

The scripted checkpoint is a real OpenK2 model whose weights script its replies, so that tool
calling can be proved end to end.

Every attention output projection and MLP down projection is zero, so each layer adds nothing to
the residual stream and the last hidden state is the current token's embedding. `lm_head` then maps
each script token's (normalised) embedding onto the next script token: a bigram model. Greedy or
sampled at temperature 1, the ANSWERS script continues

    <|im_middle|>                  -> "Sunny, 18C." <|im_end|>             (any reply: the text answer)
    <|tool_call_argument_begin|>   -> {"city": "Paris"} <|tool_call_end|> <|tool_calls_section_end|> <|im_end|>

The second line is what follows the server's forced prefix for `tool_choice` naming a function.
The CALLS_THE_TOOL script opens a tool-calls section by itself after `<|im_middle|>`.
The checkpoint is saved with `save_pretrained` and its `tokenizer.json`, and loaded the way
`openk2 serve --checkpoint` loads any checkpoint.
"""

import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from openk2.chat.tokenization import chat_token_ids, encode_chat_text
from openk2.chat.tokens import (
    CHAT_TOKENS,
    IM_END,
    IM_MIDDLE,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALL_END,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
)
from openk2.model import K2Config, K2ForCausalLM

ANSWER = "Sunny, 18C."
ARGUMENTS = '{"city": "Paris"}'
CLOSE_CALL = f"{TOOL_CALL_END}{TOOL_CALLS_SECTION_END}{IM_END}"
# Answers in text; writes the arguments when a named tool choice has forced the call's prefix.
ANSWERS = (f"{IM_MIDDLE}{ANSWER}{IM_END}", f"{TOOL_CALL_ARGUMENT_BEGIN}{ARGUMENTS}{CLOSE_CALL}")
# Calls the tool on its own, every turn.
CALLS_THE_TOOL = (
    f"{IM_MIDDLE}{TOOL_CALLS_SECTION_BEGIN}{TOOL_CALL_BEGIN}functions.get_weather:0"
    f"{TOOL_CALL_ARGUMENT_BEGIN}{ARGUMENTS}{CLOSE_CALL}",
)
VOCAB_SIZE = 512
CORPUS = [
    ANSWER,
    ARGUMENTS,
    "What is the weather in Paris? Use the tool.",
    "You are Kimi, an AI assistant created by Moonshot AI.",
    '{"type": "function", "function": {"name": "get_weather", "parameters": {}}}',
    "## Return of functions.get_weather:0",
]


def scripted_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    tokenizer.add_special_tokens(list(CHAT_TOKENS))
    return tokenizer


def _successors(tokenizer: Tokenizer, script: Sequence[str]) -> dict[int, int]:
    """token id -> the id that must follow it, from K2-format texts each read as one token chain."""
    ids = chat_token_ids(tokenizer)
    successors: dict[int, int] = {}
    for text in script:
        for current, following in itertools.pairwise(encode_chat_text(tokenizer, text, ids)):
            if successors.get(current, following) != following:
                raise ValueError(f"token {current} would need two successors; choose other script texts")
            successors[current] = following
    return successors


def _small_config() -> K2Config:
    return K2Config(
        **{
            **K2Config.preset("tiny").model_dump(),
            "vocab_size": VOCAB_SIZE,
            "num_hidden_layers": 2,
            "bos_token_id": None,
            "eos_token_id": None,
        }
    )


def scripted_model(tokenizer: Tokenizer, script: Sequence[str]) -> K2ForCausalLM:
    config = _small_config()
    torch.manual_seed(0)
    model = K2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("o_proj.weight") or "down_proj" in name:
                parameter.zero_()
        embeddings = model.model.embed_tokens.weight
        normalised = embeddings / embeddings.pow(2).mean(-1, keepdim=True).add(config.rms_norm_eps).sqrt()
        model.lm_head.weight.zero_()
        for current, following in _successors(tokenizer, script).items():
            model.lm_head.weight[following] += normalised[current]
    return model


def write_scripted_checkpoint(directory: Path, script: Sequence[str] = ANSWERS) -> Path:
    tokenizer = scripted_tokenizer()
    scripted_model(tokenizer, script).save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def write_untrained_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Random weights: junk replies that depend on the prompt, for batching, sampling and parse errors."""
    torch.manual_seed(seed)
    model = K2ForCausalLM(_small_config()).eval()
    with torch.no_grad():  # larger weights give peaked, prompt-dependent distributions
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.mul_(4)
    model.save_pretrained(directory)
    scripted_tokenizer().save(str(directory / "tokenizer.json"))
    return directory


# the one tool the scripted checkpoint knows how to call
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


# Two tools with bounded schemas: under a grammar, any model's calls to them end by themselves.
FORECAST_TOOL = {
    "type": "function",
    "function": {
        "name": "forecast",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 6},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
CLOCK_TOOL = {
    "type": "function",
    "function": {
        "name": "clock",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
