"""The in-process back ends' common part: chat requests in, continuously batched generation, replies out.

A subclass says how its model reads and writes a conversation (`ReplyFormat`: prompt tokens, the
forced start of a reply under a tool choice, the grammar that structured output imposes, how a reply
is parsed and streamed); everything else is shared: the scheduler, the prefix cache, sampling,
streaming, cancellation, weight updates, and the request checks that run before a request queues.

    engine.chat(messages, tools, SamplingParams(...), tool_choice)   one reply (blocks)
    await engine.achat(request)                                       one reply (async, cancellable)
    async for delta in engine.astream(request): ...                   the reply as it is generated
    engine.load_weights(checkpoint_dir)                               new weights between batches (RL)
"""

import asyncio
import contextlib
import queue
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from openk2.chat import ChatFormatError, Message, ParsedReply, ToolSpec
from openk2.llm.grammar import GrammarCompiler, GrammarPlan
from openk2.llm.prefix_cache import PrefixCache
from openk2.llm.protocol import LLM
from openk2.llm.runner import ModelRunner
from openk2.llm.scheduler import Policy, Scheduler
from openk2.llm.sequence import GenerationRequest, GenerationResult, StepOutput
from openk2.llm.sequence import Sequence as RunningSequence
from openk2.llm.types import (
    ChatRequest,
    Completion,
    ReplyDelta,
    SampledTokens,
    SamplingParams,
    ToolCallDelta,
    Usage,
)


def reply_budget(prompt_tokens: int, max_tokens: int | None, context_length: int) -> int:
    """How many tokens the reply may take; None means up to the end of the context."""
    if prompt_tokens >= context_length:
        raise ChatFormatError(
            f"messages: the prompt is {prompt_tokens} tokens; the model's context is {context_length}"
        )
    if max_tokens is None:
        return context_length - prompt_tokens
    if prompt_tokens + max_tokens > context_length:
        raise ChatFormatError(
            f"max_tokens: {max_tokens} after a {prompt_tokens}-token prompt exceeds the model's "
            f"context of {context_length}"
        )
    return max_tokens


class ReplyStream:
    """Turns a reply's text, as it grows, into content and tool-call deltas (one per back-end format)."""

    @abstractmethod
    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]: ...

    @abstractmethod
    def finish(self) -> tuple[str, list[ToolCallDelta]]: ...


class PlainStream(ReplyStream):
    """A reply that cannot hold tool calls: its text is its content."""

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        return text, []

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        return "", []


@dataclass(frozen=True)
class PreparedRequest:
    chat: ChatRequest
    generation: GenerationRequest


@dataclass(frozen=True)
class EngineOptions:
    """How an in-process engine schedules: batch size, queue bound, prefix cache size, batching policy."""

    max_batch_size: int = 32  # requests generated at once
    max_pending: int = 256  # queued requests before `Overloaded`
    prefix_cache_tokens: int = 65_536  # 0: no prefix cache
    policy: Policy = "continuous"


class InProcessEngine(LLM):
    """A local model behind the LLM interface, generating concurrent requests continuously batched."""

    def __init__(
        self,
        runner: ModelRunner,
        name: str,
        grammars: GrammarCompiler,
        max_token_bytes: int,
        options: EngineOptions | None = None,
    ) -> None:
        options = options or EngineOptions()
        self.runner = runner
        self._name = name
        self.grammars = grammars
        # the longest token in bytes bounds how few tokens a text can be: a context check without tokenising
        self._max_token_bytes = max_token_bytes
        self.prefix_cache = PrefixCache(options.prefix_cache_tokens) if options.prefix_cache_tokens else None
        self.scheduler = Scheduler(
            runner,
            self.encode,
            grammars,
            max_batch_size=options.max_batch_size,
            max_pending=options.max_pending,
            prefix_cache=self.prefix_cache,
            policy=options.policy,
        )

    def refuse_beyond_context(self, text: str) -> None:
        """A ChatFormatError, before tokenising, when `text` cannot fit the context whatever its tokens."""
        at_least = len(text.encode()) // self._max_token_bytes
        if at_least >= self.context_length:
            raise ChatFormatError(
                f"messages: the prompt is at least {at_least} tokens; the model's context is {self.context_length}"
            )

    # -- what a back end defines -------------------------------------------------------------------
    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @property
    @abstractmethod
    def end_ids(self) -> frozenset[int]:
        """Tokens that end a reply (kept with its tokens, not part of its text)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, token_ids: list[int]) -> str: ...

    @abstractmethod
    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """The conversation and the generation prompt as token ids."""

    @abstractmethod
    def forced_prefix(self, request: ChatRequest) -> str:
        """Text the reply must begin with (a tool-choice prefix); '' when free."""

    @abstractmethod
    def grammar(self, request: ChatRequest) -> GrammarPlan | None:
        """The grammar structured output imposes on the reply after the forced prefix, if any."""

    @abstractmethod
    def parse_reply(self, text: str, request: ChatRequest) -> ParsedReply:
        """The reply's text (forced prefix included) as an assistant message."""

    @abstractmethod
    def reply_stream(self, request: ChatRequest) -> ReplyStream: ...

    @abstractmethod
    def continuation_ids(
        self,
        history: Sequence[Message],
        new_messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
    ) -> list[int]: ...

    # -- the LLM interface --------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self._name

    def prepare(self, request: ChatRequest) -> PreparedRequest:
        """Tokenise and check a request (context, grammar) before it may queue; errors name the field."""
        prompt_ids = (
            list(request.prompt_token_ids)
            if request.prompt_token_ids is not None
            else self.prompt_ids(request)
        )
        vocab = self.runner.vocab_size
        if any(not 0 <= token < vocab for token in prompt_ids):
            raise ChatFormatError(f"prompt_token_ids: every id must be in [0, {vocab})")
        forced_ids = self.encode(self.forced_prefix(request))
        budget = reply_budget(len(prompt_ids), request.sampling.max_tokens, self.context_length)
        plan = self.grammar(request)
        if plan is not None:
            try:
                self.grammars.check(plan)
            except ChatFormatError as error:
                raise self._locate_grammar_error(request) or error from None
        generation = GenerationRequest(
            prompt_ids=prompt_ids,
            forced_ids=forced_ids,
            # the forced prefix is part of the reply and spends its budget
            budget=max(budget - len(forced_ids), 1),
            sampling=request.sampling,
            end_ids=self.end_ids,
            grammar=plan,
        )
        return PreparedRequest(request, generation)

    def _locate_grammar_error(self, request: ChatRequest) -> ChatFormatError | None:
        """The error named by the schema path the grammar library refused, e.g.
        `tools[0].function.parameters.properties.code: ... look-around ... is not supported`."""
        schemas = [
            (f"tools[{index}].function.parameters", tool.function.parameters)
            for index, tool in enumerate(request.tools or ())
            if tool.function.parameters is not None
        ]
        if request.response_format is not None and request.response_format.json_schema is not None:
            schemas.insert(0, ("response_format.json_schema", request.response_format.json_schema))
        for field, schema in schemas:
            found = self.grammars.schema_problem(schema)
            if found is not None:
                return ChatFormatError(f"{field}{found[0]}: cannot be compiled to a grammar: {found[1]}")
        return None

    def _submit(
        self, generation: GenerationRequest, deliver: Callable[[StepOutput], None]
    ) -> RunningSequence:
        sequence = RunningSequence.start(generation, deliver, self.decode, self.runner.device)
        self.scheduler.submit(sequence)
        return sequence

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        prepared = [self.prepare(request) for request in requests]  # all checked before any queues
        outboxes: list[queue.Queue[StepOutput]] = [queue.Queue() for _ in prepared]
        for item, outbox in zip(prepared, outboxes, strict=True):
            self._submit(item.generation, outbox.put)
        completions = []
        for item, outbox in zip(prepared, outboxes, strict=True):
            while (output := outbox.get()).result is None and output.error is None:
                pass
            if output.error is not None:
                raise output.error
            assert output.result is not None
            completions.append(self.completion(item.chat, output.result))
        return completions

    def start(self, generation: GenerationRequest) -> "Generation":
        """Queue a generation now (`Overloaded` when the queue is full); iterate it in this event loop."""
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[StepOutput] = asyncio.Queue()

        def deliver(output: StepOutput) -> None:
            # a closed event loop raises: its caller is gone and nobody waits for this reply
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(outbox.put_nowait, output)

        return Generation(self.scheduler, self._submit(generation, deliver), outbox)

    async def achat(self, request: ChatRequest) -> Completion:
        prepared = await asyncio.to_thread(self.prepare, request)
        async for output in self.start(prepared.generation):
            if output.result is not None:
                return self.completion(request, output.result)
        raise RuntimeError("generation ended without a result")

    async def astream(self, request: ChatRequest) -> AsyncIterator[ReplyDelta]:
        prepared = await asyncio.to_thread(self.prepare, request)
        async for delta in self.deltas(prepared, self.start(prepared.generation)):
            yield delta

    async def deltas(self, prepared: PreparedRequest, generation: "Generation") -> AsyncIterator[ReplyDelta]:
        """A started generation as reply deltas: content and tool calls as they form, the completion last."""
        request = prepared.chat
        stream = self.reply_stream(request)
        forced = prepared.generation.forced_ids
        content, calls = stream.feed(self.decode(forced))
        if content or calls:
            yield ReplyDelta(content, tuple(calls), tuple(forced))
        async for output in generation:
            content, calls = stream.feed(output.text)
            if output.result is None:
                if content or calls or output.token_ids:
                    yield ReplyDelta(content, tuple(calls), output.token_ids)
                continue
            last_content, last_calls = stream.finish()
            completion = self.completion(request, output.result)
            yield ReplyDelta(content + last_content, (*calls, *last_calls), output.token_ids, completion)

    def completion(self, request: ChatRequest, result: GenerationResult) -> Completion:
        """The finished generation as a parsed reply with usage and, when asked, its tokens."""
        text = self.decode(result.forced_ids) + result.text
        parsed = self.parse_reply(text, request)
        completion_ids = result.forced_ids + result.token_ids
        truncated = result.finish_reason == "length" and parsed.finish_reason != "tool_calls"
        tokens = None
        if request.sampling.return_tokens:
            tokens = SampledTokens(
                prompt_token_ids=result.prompt_ids,
                token_ids=completion_ids,
                sampled=[False] * len(result.forced_ids) + [True] * len(result.token_ids),
                logprobs=result.logprobs,
                temperature=request.sampling.temperature,
                top_logprobs=result.top_logprobs,
            )
        return Completion(
            model=self._name,
            message=parsed.message,
            finish_reason="length" if truncated else parsed.finish_reason,
            usage=Usage(
                prompt_tokens=len(result.prompt_ids),
                completion_tokens=len(completion_ids),
                total_tokens=len(result.prompt_ids) + len(completion_ids),
            ),
            error=parsed.error,
            errors=parsed.errors,
            tokens=tokens,
        )

    def raw_generation(self, prompt_ids: list[int], sampling: SamplingParams) -> GenerationRequest:
        """A plain continuation of token ids (`/v1/completions`): no template, no tool calls."""
        if not prompt_ids:
            raise ChatFormatError("prompt: expected at least one token")
        vocab = self.runner.vocab_size
        if any(not 0 <= token < vocab for token in prompt_ids):
            raise ChatFormatError(f"prompt: every token id must be in [0, {vocab})")
        budget = reply_budget(len(prompt_ids), sampling.max_tokens, self.context_length)
        return GenerationRequest(prompt_ids, [], budget, sampling, self.end_ids)

    def load_weights(self, directory: str) -> None:
        """Load a checkpoint's weights (same architecture) between batches: running replies finish on the
        old weights, queued ones wait and then run on the new; the prefix cache is emptied. For RL."""
        self.scheduler.run_between_batches(lambda: self.runner.load_weights(directory))

    def close(self, drain_s: float = 0.0) -> None:
        """Stop the engine: queued and running requests get `drain_s` seconds to finish, then are cancelled."""
        self.scheduler.close(drain_s)


class Generation:
    """A queued generation seen from the event loop: iterate its step outputs; leaving early cancels it."""

    def __init__(
        self, scheduler: Scheduler, sequence: RunningSequence, outbox: "asyncio.Queue[StepOutput]"
    ) -> None:
        self._scheduler = scheduler
        self._sequence = sequence
        self._outbox = outbox
        self.finished = False

    def cancel(self) -> None:
        if not self.finished:
            self._scheduler.cancel(self._sequence)

    async def __aiter__(self) -> AsyncIterator[StepOutput]:
        try:
            while not self.finished:
                output = await self._outbox.get()
                if output.error is not None:
                    self.finished = True
                    raise output.error
                self.finished = output.result is not None
                yield output
        finally:
            self.cancel()
