"""The transformers back end: any local HF causal LM with a chat template (the embedded teacher).

It runs on the same continuous-batching engine as OpenK2 checkpoints (per-sequence key/value caches,
prefix cache, streaming, structured output). Tool calling goes through structured output
(`json_tool_calls`): the tools are described in the system prompt, and under `tool_choice`
"required" or a named function a grammar writes the calls, each naming a declared tool with
arguments its JSON Schema accepts; under "auto" the model decides, and its calls are parsed
(`strict` tools and `parallel_tool_calls=false` impose the grammar once it opens the list).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from openk2.chat import ChatFormatError, Message, ParsedReply, ToolSpec
from openk2.llm.engine import EngineOptions, InProcessEngine, PlainStream, ReplyStream
from openk2.llm.grammar import GrammarCompiler, GrammarPlan, json_rule
from openk2.llm.hf_runner import HFRunner
from openk2.llm.json_tool_calls import (
    CALLS_OPEN,
    JsonCallsStream,
    conversation,
    json_calls_grammar,
    parse_json_calls,
)
from openk2.llm.k2_grammar import arguments_schema
from openk2.llm.types import ChatRequest, NamedToolChoice


class TransformersLLM(InProcessEngine):
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        options: EngineOptions | None = None,
    ) -> None:
        if tokenizer.chat_template is None:
            raise ValueError(f"{name}: the tokenizer has no chat template")
        self.model = model.eval()
        self.tokenizer = tokenizer
        eos = model.generation_config.eos_token_id
        configured = eos if isinstance(eos, list) else [eos]
        self._end_ids = frozenset(
            token for token in [*configured, tokenizer.eos_token_id] if token is not None
        )
        grammars = GrammarCompiler(
            tokenizer.backend_tokenizer.to_str(), int(model.config.vocab_size), sorted(self._end_ids)
        )
        vocab = tokenizer.get_vocab()
        max_token_bytes = max(len(tokenizer.convert_tokens_to_string([token]).encode()) for token in vocab)
        super().__init__(HFRunner(model), name, grammars, max_token_bytes, options)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, name: str | None = None, **options: Any
    ) -> "TransformersLLM":
        directory = Path(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls(model, tokenizer, name or directory.name, options=EngineOptions(**options))

    @property
    def context_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    @property
    def end_ids(self) -> frozenset[int]:
        return self._end_ids

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: list[int]) -> str:
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=False))

    def _render(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None, open_turn: bool) -> str:
        turns = conversation(messages, tools)
        self.refuse_beyond_context("".join(turn["content"] for turn in turns))
        return str(self.tokenizer.apply_chat_template(turns, add_generation_prompt=open_turn, tokenize=False))

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """The conversation through the model's own chat template, with its generation prompt."""
        tools = request.tools if request.tool_choice != "none" else None
        return self.encode(self._render(request.messages, tools, open_turn=True))

    def continuation_ids(
        self,
        history: Sequence[Message],
        new_messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
    ) -> list[int]:
        before = self._render(history, tools, open_turn=False)
        after = self._render([*history, *new_messages], tools, open_turn=True)
        if not after.startswith(before):
            raise ChatFormatError(f"messages: {self._name}'s chat template re-renders the history")
        # the running sequence ends at the reply's sampled end-of-turn token; what the template puts
        # after it (a newline in ChatML) belongs to the continuation
        end_texts = [self.decode([token]) for token in self._end_ids]
        closed = max(
            (before.rfind(text) + len(text) for text in end_texts if text in before), default=len(before)
        )
        return self.encode(after[closed:])

    def forced_prefix(self, request: ChatRequest) -> str:
        choice = request.tool_choice
        if isinstance(choice, NamedToolChoice):
            return f'{CALLS_OPEN}[{{"name": "{choice.function.name}", "arguments": '
        if choice == "required":
            return f"{CALLS_OPEN}["
        return ""

    def grammar(self, request: ChatRequest) -> GrammarPlan | None:
        tools = list(request.tools or ())
        choice = request.tool_choice
        if isinstance(choice, NamedToolChoice):
            [tool] = [tool for tool in tools if tool.function.name == choice.function.name]
            lark = f'start: {json_rule(arguments_schema(tool, enforce=True))} "}}]</tool_call>"'
            return GrammarPlan(lark, "tool_choice")
        if choice == "required":
            return GrammarPlan(
                json_calls_grammar(tools, request.parallel_tool_calls, True, CALLS_OPEN + "["), "tools"
            )
        calls_possible = bool(tools) and choice == "auto"
        if request.response_format is not None:
            answer = json_rule(request.response_format.json_schema or {"type": "object"})
            if not calls_possible:
                return GrammarPlan(f"start: {answer}", "response_format")
            calls = json_calls_grammar(tools, request.parallel_tool_calls, False, "").replace(
                "start:", "calls:", 1
            )
            return GrammarPlan(f"start: {answer} | calls\n{calls}", "response_format")
        if calls_possible and (any(t.function.strict for t in tools) or not request.parallel_tool_calls):
            lark = json_calls_grammar(tools, request.parallel_tool_calls, False, CALLS_OPEN)
            return GrammarPlan(lark, "tools", trigger=CALLS_OPEN)
        return None

    def parse_reply(self, text: str, request: ChatRequest) -> ParsedReply:
        if request.tool_choice == "none" or not request.tools:
            return ParsedReply(message=Message(role="assistant", content=text), finish_reason="stop")
        return parse_json_calls(text, list(request.tools), request.calls_so_far)

    def reply_stream(self, request: ChatRequest) -> ReplyStream:
        if request.tool_choice == "none" or not request.tools:
            return PlainStream()
        return JsonCallsStream(list(request.tools), request.calls_so_far)
