"""Structured output on K2's format: grammars that make calls and JSON replies valid, checked by `jsonschema`.

A random-weight model writes whatever its logits favour; only the grammar can make its calls valid,
so every reply here that satisfies its schema is the grammar's doing. The scripted model shows the
difference a `strict` tool makes to a model that would write an argument the schema refuses.
"""

import asyncio
import json

import jsonschema
import pytest

from openk2.chat import ChatFormatError
from openk2.llm import SamplingParams, chat_request
from tests.llm.checkpoints import CALLS_THE_TOOL, CLOCK_TOOL, FORECAST_TOOL, write_scripted_checkpoint

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in (FORECAST_TOOL, CLOCK_TOOL)}


def sampled(seed: int, **options: object) -> SamplingParams:
    # bounded schemas, at most 16 parallel calls and the rest of the context as budget: a reply under
    # the grammar ends by itself (only a reply that the budget cuts off could fail)
    return SamplingParams(temperature=1.0, seed=seed, **options)


def test_required_always_yields_schema_valid_calls_from_a_random_model(untrained_engine):
    requests = [
        chat_request(QUESTION, [FORECAST_TOOL, CLOCK_TOOL], sampled(seed), "required") for seed in range(24)
    ]
    names = set()
    for reply in untrained_engine.chat_batch(requests):
        assert reply.finish_reason == "tool_calls" and reply.errors == []
        for position, call in enumerate(reply.message.tool_calls):
            assert call.id == f"functions.{call.function.name}:{position}"
            jsonschema.validate(json.loads(call.function.arguments), TOOLS[call.function.name])
            names.add(call.function.name)
    assert names == {"forecast", "clock"}  # the model chose between the tools


def test_parallel_tool_calls_false_gives_exactly_one_call(untrained_engine):
    requests = [
        chat_request(
            QUESTION, [FORECAST_TOOL, CLOCK_TOOL], sampled(seed), "required", parallel_tool_calls=False
        )
        for seed in range(8)
    ]
    assert [len(reply.message.tool_calls) for reply in untrained_engine.chat_batch(requests)] == [1] * 8


def test_a_named_call_continues_the_dialogue_wide_counter(untrained_engine):
    earlier = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "functions.clock:0", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
        ],
    }
    dialogue = [*QUESTION, earlier, {"role": "tool", "tool_call_id": "functions.clock:0", "content": "12:00"}]
    named = {"type": "function", "function": {"name": "forecast"}}
    reply = untrained_engine.chat(dialogue, [FORECAST_TOOL, CLOCK_TOOL], sampled(3), named)
    [call] = reply.message.tool_calls
    assert call.id == "functions.forecast:1"
    jsonschema.validate(json.loads(call.function.arguments), TOOLS["forecast"])


def test_response_format_json_schema_yields_json_the_schema_accepts(untrained_engine):
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "maxLength": 8},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["answer", "confidence"],
        "additionalProperties": False,
    }
    requests = [
        chat_request(
            QUESTION, sampling=sampled(seed), response_format={"type": "json_schema", "json_schema": schema}
        )
        for seed in range(12)
    ]
    for reply in untrained_engine.chat_batch(requests):
        assert reply.finish_reason == "stop"
        jsonschema.validate(json.loads(reply.message.content), schema)


def test_json_object_mode_yields_a_json_object(untrained_engine):
    reply = untrained_engine.chat(
        QUESTION, sampling=SamplingParams(temperature=0, max_tokens=200, logit_bias=()), tool_choice="auto"
    )
    constrained = untrained_engine.chat_batch(
        [
            chat_request(
                QUESTION,
                sampling=SamplingParams(temperature=0, max_tokens=300),
                response_format={"type": "json_object"},
            )
        ]
    )[0]
    assert isinstance(json.loads(constrained.message.content), dict)
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.message.content)  # unconstrained, the same model writes no JSON


def test_a_strict_tool_holds_a_model_that_would_break_the_schema(tmp_path):
    """The scripted model always calls get_weather with {"city": "Paris"}; the schema allows only Rome or Oslo."""
    from openk2.llm.k2_engine import K2Engine

    engine = K2Engine.from_checkpoint(write_scripted_checkpoint(tmp_path, CALLS_THE_TOOL))
    parameters = {
        "type": "object",
        "properties": {"city": {"enum": ["Rome", "Oslo"]}},
        "required": ["city"],
        "additionalProperties": False,
    }

    def tool(strict: bool) -> dict[str, object]:
        return {
            "type": "function",
            "function": {"name": "get_weather", "parameters": parameters, "strict": strict},
        }

    try:
        loose = engine.chat(QUESTION, [tool(False)], SamplingParams(temperature=0))
        strict = engine.chat(QUESTION, [tool(True)], SamplingParams(temperature=0, max_tokens=60))
    finally:
        engine.close()
    assert json.loads(loose.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    [call] = strict.message.tool_calls
    assert json.loads(call.function.arguments)["city"] in {"Rome", "Oslo"}


def test_schemas_that_cannot_be_served_name_their_field(untrained_engine):
    with pytest.raises(
        ChatFormatError,
        match=r"^tools\[0\]\.function\.parameters\.properties\.a\.type: not a valid JSON Schema",
    ):
        chat_request(
            QUESTION,
            [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"a": {"type": "strin"}}},
                    },
                }
            ],
        )
    unsupported = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)a"}}}
    request = chat_request(
        QUESTION,
        sampling=SamplingParams(max_tokens=5),
        response_format={"type": "json_schema", "json_schema": unsupported},
    )
    with pytest.raises(
        ChatFormatError,
        match=r"^response_format\.json_schema\.properties\.a: cannot be compiled to a grammar: .*look",
    ):
        untrained_engine.chat_batch([request])


def test_a_failing_grammar_fails_its_request_only(untrained_engine, monkeypatch):
    """A request whose grammar breaks mid-reply gets the error; its batch neighbours finish normally."""
    from openk2.llm.grammar import TokenMatcher

    consume = TokenMatcher.consume
    calls = {"count": 0}

    def breaks_on_the_fifth_token(self, token_ids):
        calls["count"] += 1
        if calls["count"] == 5:
            raise RuntimeError("grammar: broken on purpose")
        consume(self, token_ids)

    monkeypatch.setattr(TokenMatcher, "consume", breaks_on_the_fifth_token)
    plain = chat_request(QUESTION, sampling=SamplingParams(temperature=0, max_tokens=20))
    constrained = chat_request(QUESTION, [FORECAST_TOOL], sampled(1), "required")

    async def both():
        return await asyncio.gather(
            untrained_engine.achat(plain), untrained_engine.achat(constrained), return_exceptions=True
        )

    plain_reply, failed = asyncio.run(both())
    assert isinstance(failed, RuntimeError) and "broken on purpose" in str(failed)
    assert plain_reply.usage.completion_tokens > 0
