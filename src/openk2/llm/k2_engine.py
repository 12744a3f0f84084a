"""The in-process back end: an OpenK2 checkpoint behind the LLM interface, batched, with K2's format.

    messages + tools ──K2 template──> prompt tokens (+ forced tool-call prefix) ──generate (latent KV
    cache)──> reply tokens ──cut at <|im_end|> / stop / max_tokens──> text ──openk2.chat.parse──>
    assistant message with K2 call ids, or the raw text and a parse error

Tool choice follows K2's "enforcer" (K2 report App. B) as far as a prefix can: a named function forces
`<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>` and
the model writes the arguments, which the parser checks are a JSON object; `required` forces the
section and `functions.`, the model picks the tool; `none` cuts a reply where a section would begin.
"""

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from openk2.chat import ChatFormatError, Message, ToolSpec, format_call_id, parse, render_segments
from openk2.chat.template import TemplateName
from openk2.chat.tokenization import chat_token_ids, encode_chat_text
from openk2.chat.tokens import (
    IM_END,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALLS_SECTION_BEGIN,
)
from openk2.llm.protocol import LLM
from openk2.llm.reply_trimming import trim_reply
from openk2.llm.token_accounting import completion_logprobs, reply_budget
from openk2.llm.types import (
    ChatRequest,
    Completion,
    NamedToolChoice,
    SampledTokens,
    Usage,
)
from openk2.model import K2ForCausalLM
from openk2.tokenizer.bpe import load_tokenizer
from openk2.tokenizer.special_tokens import EOS


@dataclass
class _Row:
    """One request on its way through generation."""

    request: ChatRequest
    prompt_ids: list[int]  # the rendered conversation + generation prompt
    forced_ids: list[int]  # the tool-choice prefix the model continues from
    budget: int  # tokens the model may generate after the forced prefix
    generated: list[int] = field(default_factory=list)  # tokens after the forced prefix


def forced_prefix(request: ChatRequest) -> str:
    """The text the reply must start with under the request's tool choice (empty for auto/none)."""
    if isinstance(request.tool_choice, NamedToolChoice):
        # K2's ids count every call of the dialogue from 0 (report App. B).
        index = sum(len(message.tool_calls or []) for message in request.messages)
        call_id = format_call_id(request.tool_choice.function.name, index)
        return f"{TOOL_CALLS_SECTION_BEGIN}{TOOL_CALL_BEGIN}{call_id}{TOOL_CALL_ARGUMENT_BEGIN}"
    if request.tool_choice == "required":
        return f"{TOOL_CALLS_SECTION_BEGIN}{TOOL_CALL_BEGIN}functions."
    return ""


class K2Engine(LLM):
    """An OpenK2 model and its tokenizer; `chat_batch` generates compatible requests together."""

    def __init__(
        self, model: K2ForCausalLM, tokenizer: Tokenizer, name: str, template: TemplateName = "k2-0905"
    ) -> None:
        if tokenizer.get_vocab_size() > model.config.vocab_size:
            raise ValueError(
                f"tokenizer: {tokenizer.get_vocab_size()} ids do not fit the model's vocab_size "
                f"{model.config.vocab_size}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template: TemplateName = template
        self._name = name
        self._chat_ids = chat_token_ids(tokenizer)
        self._im_end = self._chat_ids[IM_END]
        eos = tokenizer.token_to_id(EOS)
        # A pre-trained-only model ends documents with [EOS]; it ends a turn just as well.
        self._end_ids = {self._im_end} if eos is None else {self._im_end, eos}
        self._generate_lock = threading.Lock()  # one generation at a time: it uses every core

    @classmethod
    def from_checkpoint(cls, directory: str | Path, name: str | None = None) -> "K2Engine":
        """A checkpoint directory written by `openk2 pretrain`: HF model files + `tokenizer.json`."""
        directory = Path(directory)
        tokenizer_path = directory / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise FileNotFoundError(f"{tokenizer_path}: a checkpoint for chat must hold its tokenizer")
        model = K2ForCausalLM.from_pretrained(directory)
        return cls(model, load_tokenizer(tokenizer_path), name or directory.resolve().name)

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def context_length(self) -> int:
        return self.model.config.max_position_embeddings

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

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        rows = [self._prepare(request) for request in requests]
        with self._generate_lock:
            for group in self._batches(rows):
                self._generate(group)
        return [self._complete(row) for row in rows]

    def _prepare(self, request: ChatRequest) -> _Row:
        prompt_ids = (
            list(request.prompt_token_ids)
            if request.prompt_token_ids is not None
            else self.prompt_ids(request)
        )
        forced_ids = self.encode(forced_prefix(request))
        max_tokens = reply_budget(len(prompt_ids), request.sampling.max_tokens, self.context_length)
        # The forced prefix is part of the reply and spends its budget.
        return _Row(request, prompt_ids, forced_ids, budget=max(max_tokens - len(forced_ids), 0))

    @staticmethod
    def _batches(rows: list[_Row]) -> list[list[_Row]]:
        """Rows that one `generate` call can serve: the same sampling (prompts are left-padded together).

        A seeded row generates alone, so its seed alone decides its sample.
        """
        groups: dict[tuple[object, ...], list[_Row]] = defaultdict(list)
        for position, row in enumerate(rows):
            sampling = row.request.sampling
            alone = position if sampling.seed is not None else None
            groups[(sampling.temperature, sampling.top_p, alone)].append(row)
        return list(groups.values())

    def _generate(self, group: list[_Row]) -> None:
        sampling = group[0].request.sampling
        generator = None if sampling.seed is None else torch.Generator().manual_seed(sampling.seed)
        prompts = [row.prompt_ids + row.forced_ids for row in group]
        longest = max(len(prompt) for prompt in prompts)
        # left padding: every row's newest token sits in the last column
        input_ids = torch.tensor([[self._im_end] * (longest - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
        output = self.model.generate(
            input_ids,
            max_new_tokens=max(row.budget for row in group),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            eos_token_id=self._im_end,
            generator=generator,
            attention_mask=attention_mask,
        )
        for row, tokens in zip(group, output[:, longest:].tolist(), strict=True):
            row.generated = tokens

    def _complete(self, row: _Row) -> Completion:
        request, sampling = row.request, row.request.sampling
        reply = trim_reply(row.generated, self.decode, self._end_ids, sampling.stop, row.budget)
        text = self.decode(row.forced_ids) + reply.text
        if request.tool_choice == "none":
            text = text.split(TOOL_CALLS_SECTION_BEGIN, 1)[0]
        parsed = parse(text, list(request.tools or ()))
        truncated = reply.finish_reason == "length" and parsed.finish_reason != "tool_calls"
        completion_ids = row.forced_ids + reply.token_ids
        tokens = None
        if sampling.return_tokens:
            tokens = SampledTokens(
                prompt_token_ids=row.prompt_ids,
                token_ids=completion_ids,
                sampled=[False] * len(row.forced_ids) + [True] * len(reply.token_ids),
                logprobs=completion_logprobs(
                    self.model, row.prompt_ids, completion_ids, sampling.temperature
                ),
                temperature=sampling.temperature,
            )
        return Completion(
            model=self._name,
            message=parsed.message,
            finish_reason="length" if truncated else parsed.finish_reason,
            usage=Usage(
                prompt_tokens=len(row.prompt_ids),
                completion_tokens=len(completion_ids),
                total_tokens=len(row.prompt_ids) + len(completion_ids),
            ),
            error=parsed.error,
            tokens=tokens,
        )
