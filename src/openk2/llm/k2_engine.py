"""The in-process back end for OpenK2 checkpoints: K2's chat format on the continuous-batching engine.

    messages + tools ──K2 template──> prompt tokens (+ forced tool-call prefix) ──continuous batching
    (per-sequence MLA latent caches, prefix cache)──> reply tokens ──cut at <|im_end|> / stop /
    max_tokens──> text ──openk2.chat.parse──> assistant message with K2 call ids (+ errors per bad call)

Tool choice follows K2's "enforcer" (K2 report App. B): a named function forces
`<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>` and
a grammar makes the arguments satisfy the tool's JSON Schema; "required" forces the section and
`functions.`, and the grammar lets the model choose among the declared tools, each call valid;
"none" cuts a reply where a section would begin. Under "auto", `strict` tools and
`parallel_tool_calls=false` impose the grammar from the moment the model opens a section.
`response_format` makes the whole reply JSON (or, with tools under auto, a section of calls).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from openk2.chat import (
    ChatFormatError,
    Message,
    ParsedReply,
    ToolSpec,
    format_call_id,
    parse,
    render_segments,
)
from openk2.chat.template import TemplateName
from openk2.chat.tokenization import chat_token_ids, encode_chat_text
from openk2.chat.tokens import (
    IM_END,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALL_END,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
)
from openk2.llm.engine import EngineOptions, InProcessEngine
from openk2.llm.grammar import GrammarCompiler, GrammarPlan
from openk2.llm.k2_grammar import json_reply_grammar, named_call_grammar, tool_calls_grammar
from openk2.llm.k2_runner import K2Runner
from openk2.llm.k2_stream import K2ReplyStream
from openk2.llm.types import ChatRequest, NamedToolChoice
from openk2.model import K2ForCausalLM
from openk2.tokenizer.bpe import load_tokenizer
from openk2.tokenizer.special_tokens import EOS


def forced_prefix(request: ChatRequest) -> str:
    """The text the reply must start with under the request's tool choice (empty for auto/none)."""
    if isinstance(request.tool_choice, NamedToolChoice):
        call_id = format_call_id(request.tool_choice.function.name, request.calls_so_far)
        return f"{TOOL_CALLS_SECTION_BEGIN}{TOOL_CALL_BEGIN}{call_id}{TOOL_CALL_ARGUMENT_BEGIN}"
    if request.tool_choice == "required":
        return f"{TOOL_CALLS_SECTION_BEGIN}{TOOL_CALL_BEGIN}functions."
    return ""


class K2Engine(InProcessEngine):
    """An OpenK2 model and its tokenizer; concurrent requests are generated continuously batched."""

    def __init__(
        self,
        model: K2ForCausalLM,
        tokenizer: Tokenizer,
        name: str,
        template: TemplateName = "k2-0905",
        options: EngineOptions | None = None,
    ) -> None:
        if tokenizer.get_vocab_size() > model.config.vocab_size:
            raise ValueError(
                f"tokenizer: {tokenizer.get_vocab_size()} ids do not fit the model's vocab_size "
                f"{model.config.vocab_size}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template: TemplateName = template
        self._chat_ids = chat_token_ids(tokenizer)
        eos = tokenizer.token_to_id(EOS)
        # A pre-trained-only model ends documents with [EOS]; it ends a turn just as well.
        im_end = self._chat_ids[IM_END]
        self._end_ids = frozenset({im_end} if eos is None else {im_end, eos})
        self._markup = {
            "section_begin": self._chat_ids[TOOL_CALLS_SECTION_BEGIN],
            "section_end": self._chat_ids[TOOL_CALLS_SECTION_END],
            "call_begin": self._chat_ids[TOOL_CALL_BEGIN],
            "arg": self._chat_ids[TOOL_CALL_ARGUMENT_BEGIN],
            "call_end": self._chat_ids[TOOL_CALL_END],
        }
        grammars = GrammarCompiler(tokenizer.to_str(), model.config.vocab_size, sorted(self._end_ids))
        max_token_bytes = max(len(token.encode()) for token in tokenizer.get_vocab())
        super().__init__(K2Runner(model), name, grammars, max_token_bytes, options)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, name: str | None = None, **options: Any) -> "K2Engine":
        """A checkpoint directory written by `openk2 pretrain`: HF model files + `tokenizer.json`;
        `options` are `EngineOptions` fields."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such checkpoint directory")
        tokenizer_path = directory / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise FileNotFoundError(f"{tokenizer_path}: a checkpoint for chat must hold its tokenizer")
        model = K2ForCausalLM.from_pretrained(directory)
        tokenizer = load_tokenizer(tokenizer_path)
        return cls(model, tokenizer, name or directory.resolve().name, options=EngineOptions(**options))

    @property
    def context_length(self) -> int:
        return self.model.config.max_position_embeddings

    @property
    def end_ids(self) -> frozenset[int]:
        return self._end_ids

    def encode(self, text: str) -> list[int]:
        """Token ids of K2-format text, chat tokens as their single ids."""
        return encode_chat_text(self.tokenizer, text, self._chat_ids)

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=False)

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """The conversation + generation prompt, tokenised segment by segment as SFT tokenises it."""
        segments = render_segments(
            request.messages, request.tools, add_generation_prompt=True, template=self.template
        )
        self.refuse_beyond_context("".join(segment.text for segment in segments))
        return [token for segment in segments for token in self.encode(segment.text)]

    def continuation_ids(
        self,
        history: Sequence[Message],
        new_messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
    ) -> list[int]:
        # K2's template renders message by message, so the new messages' segments follow history's unchanged
        before = render_segments(history, tools, template=self.template, close_every_message=True)
        after = render_segments(
            [*history, *new_messages], tools, add_generation_prompt=True, template=self.template
        )
        if after[: len(before)] != before:
            raise ChatFormatError("messages: the new messages change the rendering of the history")
        return [token for segment in after[len(before) :] for token in self.encode(segment.text)]

    def forced_prefix(self, request: ChatRequest) -> str:
        return forced_prefix(request)

    def grammar(self, request: ChatRequest) -> GrammarPlan | None:
        tools = list(request.tools or ())
        choice = request.tool_choice
        if isinstance(choice, NamedToolChoice):
            [tool] = [tool for tool in tools if tool.function.name == choice.function.name]
            return GrammarPlan(named_call_grammar(tool, self._markup), "tool_choice")
        first = request.calls_so_far
        if choice == "required":
            lark = tool_calls_grammar(
                tools, self._markup, first, request.parallel_tool_calls, True, "functions."
            )
            return GrammarPlan(lark, "tools")
        calls_possible = bool(tools) and choice == "auto"
        tools_lark = None
        if calls_possible:
            tools_lark = tool_calls_grammar(
                tools, self._markup, first, request.parallel_tool_calls, False, "section"
            )
        if request.response_format is not None:
            schema = request.response_format.json_schema or {"type": "object"}
            lark = json_reply_grammar(schema, tools_lark, self._markup["section_begin"])
            return GrammarPlan(lark, "response_format")
        enforce = any(tool.function.strict for tool in tools) or not request.parallel_tool_calls
        if tools_lark is not None and enforce:
            return GrammarPlan(tools_lark, "tools", trigger=TOOL_CALLS_SECTION_BEGIN)
        return None

    def parse_reply(self, text: str, request: ChatRequest) -> ParsedReply:
        if request.tool_choice == "none":
            text = text.split(TOOL_CALLS_SECTION_BEGIN, 1)[0]
        return parse(text, list(request.tools or ()))

    def reply_stream(self, request: ChatRequest) -> K2ReplyStream:
        known = {tool.function.name for tool in request.tools or ()}
        return K2ReplyStream(known, calls_allowed=request.tool_choice != "none")
