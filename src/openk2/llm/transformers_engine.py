"""The transformers back end: any local HF causal LM with a chat template (the embedded teacher).

Text chat only. Tool calling needs the model's own call format and parser; K2's lives in the
OpenK2 back end, and a request with tools is refused here rather than served without them.
Requests with the same sampling parameters are generated together, left-padded.
"""

import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from openk2.chat import ChatFormatError, Message, ToolSpec
from openk2.llm.protocol import LLM
from openk2.llm.reply_trimming import trim_reply
from openk2.llm.token_accounting import completion_logprobs, reply_budget
from openk2.llm.types import ChatRequest, Completion, SampledTokens, Usage


class TransformersLLM(LLM):
    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
        if tokenizer.chat_template is None:
            raise ValueError(f"{name}: the tokenizer has no chat template")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._name = name
        eos = model.generation_config.eos_token_id
        configured = eos if isinstance(eos, list) else [eos]
        self._end_ids = {token for token in [*configured, tokenizer.eos_token_id] if token is not None}
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self._end_ids)
        self._generate_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str | None = None) -> "TransformersLLM":
        directory = Path(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        return cls(model, AutoTokenizer.from_pretrained(directory), name or directory.name)

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def context_length(self) -> int:
        return self.model.config.max_position_embeddings

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """The conversation through the model's own chat template, with its generation prompt."""
        self._check_plain_chat(request.messages, request.tools)
        if request.prompt_token_ids is not None:
            return list(request.prompt_token_ids)
        return self.tokenizer.apply_chat_template(
            self._conversation(request.messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )

    def continuation_ids(
        self,
        history: Sequence[Message],
        new_messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
    ) -> list[int]:
        self._check_plain_chat([*history, *new_messages], tools)
        before = self.tokenizer.apply_chat_template(self._conversation(history), tokenize=False)
        after = self.tokenizer.apply_chat_template(
            self._conversation([*history, *new_messages]), add_generation_prompt=True, tokenize=False
        )
        if not after.startswith(before):
            raise ChatFormatError(f"messages: {self._name}'s chat template re-renders the history")
        # the running sequence ends at the reply's sampled end-of-turn token; what the template puts
        # after it (a newline in ChatML) belongs to the continuation
        end_texts = [self.decode([token]) for token in self._end_ids]
        closed = max(
            (before.rfind(text) + len(text) for text in end_texts if text in before), default=len(before)
        )
        return self.tokenizer.encode(after[closed:], add_special_tokens=False)

    @staticmethod
    def _conversation(messages: Sequence[Message]) -> list[dict[str, str]]:
        return [{"role": message.role, "content": message.text} for message in messages]

    def _check_plain_chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None) -> None:
        if tools:
            raise ChatFormatError(
                f"tools: {self._name} is served for plain chat; tool calling needs a K2 model"
            )
        for index, message in enumerate(messages):
            if message.tool_calls:
                raise ChatFormatError(f"messages[{index}].tool_calls: {self._name} serves plain chat only")

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=False)

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        prompts = [self.prompt_ids(request) for request in requests]
        budgets = [
            reply_budget(len(prompt), request.sampling.max_tokens, self.context_length)
            for prompt, request in zip(prompts, requests, strict=True)
        ]
        generated: dict[int, list[int]] = {}
        groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for position, request in enumerate(requests):
            sampling = request.sampling
            alone = position if sampling.seed is not None else None  # a seeded row generates alone
            groups[(sampling.temperature, sampling.top_p, alone)].append(position)
        with self._generate_lock:
            for positions in groups.values():
                rows = self._generate(
                    [prompts[p] for p in positions],
                    max(budgets[p] for p in positions),
                    requests[positions[0]],
                )
                generated.update(zip(positions, rows, strict=True))
        return [
            self._complete(request, prompt, generated[position], budget)
            for position, (request, prompt, budget) in enumerate(zip(requests, prompts, budgets, strict=True))
        ]

    @torch.no_grad()
    def _generate(
        self, prompts: list[list[int]], max_new_tokens: int, request: ChatRequest
    ) -> list[list[int]]:
        """Left-padded batch -> the tokens each row generated after its prompt."""
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.tensor([[self._pad_id] * (width - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        sampling = request.sampling
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)  # transformers samples from the global generator
        # top_k 0: the request's top_p is the only truncation
        sampled = {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": 0,
        }
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=sorted(self._end_ids),
            pad_token_id=self._pad_id,
            **(sampled if sampling.temperature > 0 else {"do_sample": False}),
        )
        return output[:, width:].tolist()

    def _complete(
        self, request: ChatRequest, prompt: list[int], generated: list[int], budget: int
    ) -> Completion:
        sampling = request.sampling
        reply = trim_reply(generated, self.decode, self._end_ids, sampling.stop, budget)
        tokens = None
        if sampling.return_tokens:
            tokens = SampledTokens(
                prompt_token_ids=prompt,
                token_ids=reply.token_ids,
                sampled=[True] * len(reply.token_ids),
                logprobs=completion_logprobs(self.model, prompt, reply.token_ids, sampling.temperature),
                temperature=sampling.temperature,
            )
        return Completion(
            model=self._name,
            message=Message(role="assistant", content=reply.text),
            finish_reason=reply.finish_reason,
            usage=Usage(
                prompt_tokens=len(prompt),
                completion_tokens=len(reply.token_ids),
                total_tokens=len(prompt) + len(reply.token_ids),
            ),
            tokens=tokens,
        )
