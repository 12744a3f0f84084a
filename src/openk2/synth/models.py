"""The models of a synthesis run, one per role, every call through `openk2.llm` and the run's reply cache.

Roles (K2 report §3.1.1, Fig. 8): the `generator` writes domains, tools, agents' system prompts and
tasks; the `agent` plays the tasks; the `user` simulator and the `tool_simulator` play the world; the
`judge` scores trajectories against their rubrics. A recipe gives each role an `LLMConfig`; roles with
the same configuration share one loaded model.

Every reply is stored in the run's `ReplyCache` under a hash of the request, so a resumed run asks no
model the same thing twice, and the tokens each role used are counted.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from openk2.chat import Message
from openk2.io import ReplyCache
from openk2.llm import (
    LLM,
    ChatRequest,
    Completion,
    ModelUnavailable,
    ResponseFormat,
    SamplingParams,
    chat_request,
)
from openk2.llm.types import check_json_schema

Role = Literal["generator", "agent", "user", "tool_simulator", "judge"]
ROLES: tuple[Role, ...] = ("generator", "agent", "user", "tool_simulator", "judge")


@dataclass
class Accounting:
    """Calls and tokens per role: `spent` counts every reply the run used, `fresh` those asked this time."""

    calls: Counter[str] = field(default_factory=Counter)
    cached: Counter[str] = field(default_factory=Counter)
    prompt_tokens: Counter[str] = field(default_factory=Counter)
    completion_tokens: Counter[str] = field(default_factory=Counter)
    unparsed: Counter[str] = field(default_factory=Counter)

    def add(self, role: str, completion: Completion, from_cache: bool) -> None:
        self.calls[role] += 1
        self.cached[role] += from_cache
        self.prompt_tokens[role] += completion.usage.prompt_tokens
        self.completion_tokens[role] += completion.usage.completion_tokens
        self.unparsed[role] += completion.error is not None

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            role: {
                "calls": self.calls[role],
                "from_cache": self.cached[role],
                "prompt_tokens": self.prompt_tokens[role],
                "completion_tokens": self.completion_tokens[role],
                "unparsed_replies": self.unparsed[role],
            }
            for role in ROLES
            if self.calls[role]
        }


def request_key(model: str, request: ChatRequest) -> str:
    """The cache key of a request: everything that can change the reply."""
    return ReplyCache.key(
        model=model,
        messages=[message.model_dump(mode="json", exclude_none=True) for message in request.messages],
        tools=[tool.to_openai() for tool in request.tools or ()],
        tool_choice=request.tool_choice
        if isinstance(request.tool_choice, str)
        else request.tool_choice.model_dump(mode="json"),
        sampling=request.sampling.model_dump(mode="json"),
        response_format=None
        if request.response_format is None
        else request.response_format.model_dump(mode="json"),
        parallel_tool_calls=request.parallel_tool_calls,
    )


class RoleLLM(LLM):
    """One role's view of a model: cached, counted, and remembering whether the model went away.

    `unavailable` is set when the model could not answer (`ModelUnavailable`): the episode that saw it
    is not committed, so a rerun plays it again instead of recording an outage as the agent's failure.
    """

    def __init__(self, role: Role, llm: LLM, cache: ReplyCache, accounting: Accounting) -> None:
        self.role = role
        self.llm = llm
        self.cache = cache
        self.accounting = accounting
        self.unavailable: str | None = None

    @property
    def model_name(self) -> str:
        return self.llm.model_name

    def fork(self) -> RoleLLM:
        """The same role for one episode, with its own `unavailable` flag."""
        return RoleLLM(self.role, self.llm, self.cache, self.accounting)

    def _cached(self, key: str) -> Completion | None:
        stored = self.cache.get(key)
        return None if stored is None else Completion.model_validate(stored["completion"])

    def _store(self, key: str, completion: Completion) -> None:
        self.cache.put(key, {"completion": json.loads(completion.model_dump_json())})

    async def achat(self, request: ChatRequest) -> Completion:
        key = request_key(self.model_name, request)
        completion = self._cached(key)
        if completion is not None:
            self.accounting.add(self.role, completion, from_cache=True)
            return completion
        try:
            completion = await self.llm.achat(request)
        except ModelUnavailable as error:
            self.unavailable = f"{self.role}: {error}"
            raise
        self._store(key, completion)
        self.accounting.add(self.role, completion, from_cache=False)
        return completion

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        keys = [request_key(self.model_name, request) for request in requests]
        found: list[Completion | None] = [self._cached(key) for key in keys]
        missing = [index for index, completion in enumerate(found) if completion is None]
        if missing:
            answered = self.llm.chat_batch([requests[index] for index in missing])
            for index, answer in zip(missing, answered, strict=True):
                self._store(keys[index], answer)
                found[index] = answer
        completions: list[Completion] = []
        for index, reply in enumerate(found):
            assert reply is not None
            self.accounting.add(self.role, reply, from_cache=index not in missing)
            completions.append(reply)
        return completions


def structured_request(
    messages: list[Message], schema: dict[str, Any], sampling: SamplingParams
) -> ChatRequest:
    """A request whose reply must be JSON that `schema` accepts (response_format json_schema).

    `chat_request` would meta-validate the schema on every call (~80 ms for draft 2020-12 in
    `jsonschema`); synthesis sends the same few schemas thousands of times, so each is checked once.
    """
    _check_schema_once(json.dumps(schema, sort_keys=True))
    request = chat_request(messages, sampling=sampling)
    return dataclasses.replace(
        request, response_format=ResponseFormat(type="json_schema", json_schema=schema)
    )


async def ask_structured(
    llm: LLM, messages: list[Message], schema: dict[str, Any], sampling: SamplingParams
) -> Completion:
    """A structured reply; one cut at its budget is lost work, so it is asked once more with twice the room."""
    completion = await llm.achat(structured_request(messages, schema, sampling))
    if completion.finish_reason == "length" and sampling.max_tokens is not None:
        sampling = sampling.model_copy(update={"max_tokens": 2 * sampling.max_tokens})
        completion = await llm.achat(structured_request(messages, schema, sampling))
    return completion


@functools.cache
def _check_schema_once(schema: str) -> None:
    check_json_schema(json.loads(schema), "response_format.json_schema")


def structured_reply(completion: Completion) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object a structured reply holds, None) or (None, why it cannot be read)."""
    text = completion.message.text.strip()
    if completion.finish_reason == "length":
        return None, f"the reply was cut at its token budget: {text[-80:]!r}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"not JSON ({error.msg} at {error.pos}): {text[:80]!r}"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {type(value).__name__}"
    return value, None


def load_role_models(configs: dict[Role, Any], concurrency: int) -> tuple[dict[Role, LLM], list[LLM]]:
    """The loaded model of each role (roles with equal configurations share one) and the list to close."""
    from openk2.llm import load_concurrent_llm

    loaded: dict[str, LLM] = {}
    models: dict[Role, LLM] = {}
    for role in ROLES:
        config = configs[role]
        key = config.model_dump_json()
        if key not in loaded:
            loaded[key] = load_concurrent_llm(config, concurrency)
        models[role] = loaded[key]
    return models, list(loaded.values())
