"""The official openai client against `openk2 serve`: true streaming, streamed tool calls, structured output.

The random-weight model writes junk of its own; only the grammar makes its calls and JSON valid, so
every `jsonschema` check that passes here is the server's structured output at work.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from tests.llm.checkpoints import CLOCK_TOOL, FORECAST_TOOL, scripted_tokenizer

QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
IM_END_ID = scripted_tokenizer().token_to_id("<|im_end|>")
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in (FORECAST_TOOL, CLOCK_TOOL)}


def test_the_first_event_of_a_300_token_reply_arrives_while_it_is_generated(random_model):
    untrained = random_model
    client = untrained.client()
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model=untrained.engine.model_name,
        messages=[QUESTION],
        max_tokens=300,
        temperature=0,
        logit_bias={str(IM_END_ID): -100},  # the reply runs its whole budget
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if not arrivals:
                first_token_s = time.perf_counter() - started
                still_generating = untrained.engine.scheduler.running
            arrivals.append(time.perf_counter() - started)
        if chunk.usage is not None:
            usage = chunk.usage
    print(f"time to first token {1000 * first_token_s:.0f} ms, whole reply {1000 * arrivals[-1]:.0f} ms")
    assert usage.completion_tokens == 300
    assert still_generating == 1  # the first content came while the reply was still being generated
    assert len(arrivals) > 100  # token by token, not one block at the end
    assert arrivals[0] < arrivals[-1]


def streamed_calls(stream) -> tuple[list[dict[str, str]], str | None]:
    """Reassemble OpenAI tool-call deltas the way clients do."""
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"], call["name"] = delta.id, delta.function.name
            call["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    return [calls[index] for index in sorted(calls)], finish


@pytest.mark.parametrize("seed", range(6))
def test_streamed_tool_call_deltas_reassemble_to_the_non_streamed_calls(random_model, seed):
    served = random_model
    arguments = {
        "model": served.engine.model_name,
        "messages": [QUESTION],
        "tools": [FORECAST_TOOL, CLOCK_TOOL],
        "tool_choice": "required",
        "temperature": 1.0,
        "seed": seed,
    }
    whole = served.client().chat.completions.create(**arguments)
    expected = [
        {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
        for call in whole.choices[0].message.tool_calls
    ]
    calls, finish = streamed_calls(served.client().chat.completions.create(**arguments, stream=True))
    assert calls == expected and finish == whole.choices[0].finish_reason == "tool_calls"


def test_tool_choice_required_on_a_random_model_always_yields_a_schema_valid_call(random_model):
    """200 tries: 25 requests of n=8 choices, sent concurrently."""
    served = random_model
    client = served.client(max_retries=0)

    def ask(seed: int) -> list[tuple[str, dict]]:
        response = client.chat.completions.create(
            model=served.engine.model_name,
            messages=[QUESTION],
            tools=[FORECAST_TOOL, CLOCK_TOOL],
            tool_choice="required",
            parallel_tool_calls=False,
            temperature=1.0,
            seed=1000 * seed,
            n=8,
        )
        found = []
        for choice in response.choices:
            assert choice.finish_reason == "tool_calls" and "parse_errors" not in choice.model_extra
            [call] = choice.message.tool_calls
            found.append((call.function.name, json.loads(call.function.arguments)))
        return found

    with ThreadPoolExecutor(8) as pool:
        calls = [call for found in pool.map(ask, range(25)) for call in found]
    assert len(calls) == 200
    for name, arguments in calls:
        jsonschema.validate(arguments, SCHEMAS[name])
    assert {name for name, _ in calls} == {"forecast", "clock"}


def test_response_format_json_schema_always_yields_json_the_schema_accepts(random_model):
    served = random_model
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "maxLength": 10},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
            "score": {"type": "integer", "minimum": 0, "maximum": 9},
        },
        "required": ["answer", "tags", "score"],
        "additionalProperties": False,
    }
    response = served.client().chat.completions.create(
        model=served.engine.model_name,
        messages=[QUESTION],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        },
        temperature=1.0,
        seed=5,
        n=8,
    )
    for choice in response.choices:
        jsonschema.validate(json.loads(choice.message.content), schema)


def test_several_choices_stream_side_by_side(scripted):
    stream = scripted.client().chat.completions.create(
        model=scripted.engine.model_name, messages=[QUESTION], n=3, seed=1, stream=True
    )
    texts = ["", "", ""]
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == ["Sunny, 18C."] * 3


def test_raw_completions_plain_and_streamed(scripted):
    client = scripted.client()
    prompt = "<|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|>"
    whole = client.completions.create(
        model=scripted.engine.model_name, prompt=prompt, max_tokens=20, temperature=0
    )
    assert whole.choices[0].text == "Sunny, 18C." and whole.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=scripted.engine.model_name, prompt=prompt, max_tokens=20, temperature=0, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in streamed) == "Sunny, 18C."
    ids = scripted.engine.encode(prompt)
    by_ids = client.completions.create(
        model=scripted.engine.model_name, prompt=ids, max_tokens=3, temperature=0, logprobs=2
    )
    assert by_ids.choices[0].text == "Sunny," and by_ids.choices[0].finish_reason == "length"
    assert len(by_ids.choices[0].logprobs.token_logprobs) == 3
