"""`openk2 serve` through the official openai client on a real loopback server.

The scripted checkpoint answers "Sunny, 18C." and, after the forced prefix of a named tool choice,
writes `{"city": "Paris"}` and closes the call; what is proved is the path around it: rendering,
batching, generation, parsing, K2 call ids, the wire format and the multi-turn tool loop.
"""

import json

import httpx
import openai
import pytest

from openk2.chat import render
from tests.llm.checkpoints import ANSWER, ARGUMENTS, WEATHER_TOOL

CALL_WEATHER = {"type": "function", "function": {"name": "get_weather"}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


def get_weather(city: str) -> dict[str, object]:
    """The tool the client executes."""
    return {"city": city, "temperature_c": 18, "sky": "sunny"}


def test_health_and_models(scripted):
    base = scripted.server.base_url.removesuffix("/v1")
    assert httpx.get(f"{base}/health").json() == {"status": "ok", "model": scripted.engine.model_name}
    assert [model.id for model in scripted.client().models.list()] == [scripted.engine.model_name]


def test_plain_chat(scripted):
    response = scripted.client().chat.completions.create(
        model=scripted.engine.model_name, messages=[QUESTION], temperature=0.6, max_tokens=32, seed=1
    )
    [choice] = response.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == ANSWER
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert response.usage.completion_tokens == 8  # "Sunny, 18C." (7 tokens) + <|im_end|>
    assert response.usage.total_tokens == response.usage.prompt_tokens + 8


def test_streaming_chat(scripted):
    stream = scripted.client().chat.completions.create(
        model=scripted.engine.model_name,
        messages=[QUESTION],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finish = [
        chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason
    ]
    assert text == ANSWER
    assert finish == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_streaming_tool_call(scripted):
    stream = scripted.client().chat.completions.create(
        model=scripted.engine.model_name,
        messages=[QUESTION],
        tools=[WEATHER_TOOL],
        tool_choice=CALL_WEATHER,
        stream=True,
    )
    deltas = [call for chunk in stream for call in (chunk.choices[0].delta.tool_calls or [])]
    # OpenAI's shape: a first delta with index, id, type and name, then argument fragments
    first, *fragments = deltas
    assert (first.index, first.id, first.type, first.function.name) == (
        0,
        "functions.get_weather:0",
        "function",
        "get_weather",
    )
    assert fragments and all(delta.id is None and delta.function.name is None for delta in fragments)
    assert first.function.arguments + "".join(delta.function.arguments for delta in fragments) == ARGUMENTS


def test_multi_turn_tool_loop(scripted):
    """The client runs the tool and sends the result back; the server renders it as K2 reads it."""
    client = scripted.client()
    messages: list[dict[str, object]] = [QUESTION]
    transcript = []
    tool_choice: object = CALL_WEATHER
    for _ in range(4):  # bounded: call, answer
        response = client.chat.completions.create(
            model=scripted.engine.model_name,
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice=tool_choice,
            extra_body={"return_token_ids": True},
        )
        choice = response.choices[0]
        transcript.append(choice.finish_reason)
        # the prompt the engine generated from, exactly the K2 rendering of the conversation so far
        prompt_text = scripted.engine.decode(response.model_extra["prompt_token_ids"])
        assert prompt_text == render(messages, [WEATHER_TOOL], add_generation_prompt=True)
        messages.append(
            choice.message.model_dump(include={"role", "content", "tool_calls"}, exclude_none=True)
        )
        if choice.finish_reason != "tool_calls":
            break
        for call in choice.message.tool_calls:
            result = get_weather(**json.loads(call.function.arguments))
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "name": call.function.name,
                    "content": json.dumps(result),
                }
            )
        tool_choice = "auto"
    assert transcript == ["tool_calls", "stop"]
    assert messages[1]["tool_calls"][0]["id"] == "functions.get_weather:0"
    assert messages[-1]["content"] == ANSWER
    assert '## Return of functions.get_weather:0\n    {"city": "Paris", "temperature_c": 18' in prompt_text

    # A later call in the same dialogue continues K2's dialogue-wide counter.
    messages.append({"role": "user", "content": "And again?"})
    again = client.chat.completions.create(
        model=scripted.engine.model_name, messages=messages, tools=[WEATHER_TOOL], tool_choice=CALL_WEATHER
    )
    assert again.choices[0].message.tool_calls[0].id == "functions.get_weather:1"


def test_tool_choice_none_with_tools_answers_in_text(scripted):
    response = scripted.client().chat.completions.create(
        model=scripted.engine.model_name, messages=[QUESTION], tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert response.choices[0].message.content == ANSWER
    assert response.choices[0].finish_reason == "stop"


def test_n_choices_with_stop_and_token_ids(scripted):
    response = scripted.client().chat.completions.create(
        model=scripted.engine.model_name,
        messages=[QUESTION],
        n=3,
        seed=5,
        stop=[","],
        logprobs=True,
        extra_body={"return_token_ids": True},
    )
    assert [choice.index for choice in response.choices] == [0, 1, 2]
    for choice in response.choices:
        assert choice.message.content == "Sunny"
        assert choice.finish_reason == "stop"
        token_ids = choice.model_extra["token_ids"]
        assert scripted.engine.decode(token_ids).startswith("Sunny,")
        assert [entry.token for entry in choice.logprobs.content] == [
            f"token_id:{token}" for token in token_ids
        ]
    assert response.usage.completion_tokens == sum(len(c.model_extra["token_ids"]) for c in response.choices)


BAD_REQUESTS = [
    ({"temperature": -1}, 400, "temperature"),
    ({"top_p": 0}, 400, "top_p"),
    ({"n": 100}, 400, "n"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 100_000}, 400, "max_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"logit_bias": {"x": 5}}, 400, "logit_bias"),
    ({"logit_bias": {"1": 500}}, 400, "logit_bias"),
    ({"temperature": "0.5"}, 400, "temperature"),
    ({"seed": 2**64}, 400, "seed"),
    ({"top_logprobs": 3}, 400, "top_logprobs"),
    ({"modalities": ["audio"]}, 400, "modalities"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        400,
        "messages[0].content[0].type",
    ),
    (
        {"messages": [QUESTION, {"role": "tool", "tool_call_id": "functions.f:0", "content": "1"}]},
        400,
        "messages[1].tool_call_id",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]},
        400,
        "tools[0].function.parameters.type",
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": {"type": "objekt"}},
            }
        },
        400,
        "response_format.json_schema.type",
    ),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "properties": {"a": {"type": "string", "pattern": "(?<=x)a"}},
                        },
                    },
                }
            ],
            "tool_choice": "required",
        },
        400,
        "tools[0].function.parameters.properties.a",
    ),
    ({"messages": []}, 400, "messages"),
    ({"messages": [QUESTION, {"role": "robot", "content": "hi"}]}, 400, "messages[1].role"),
    ({"messages": [QUESTION], "max_tokens": 100, "max_completion_tokens": 0}, 400, "max_completion_tokens"),
    ({"messages": [{"role": "tool", "content": "18C"}]}, 400, "messages[0].tool_call_id"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, 400, "tools[0].function.name"),
    ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, 400, None),
    ({"tool_choice": "required"}, 400, "tool_choice"),
    ({"tool_choice": "sometimes"}, 400, "tool_choice"),
    ({"model": "gpt-4o"}, 404, "model"),
]


@pytest.mark.parametrize(("override", "status", "param"), BAD_REQUESTS)
def test_bad_requests_get_openai_errors_naming_the_field(scripted, override, status, param):
    arguments = {"model": scripted.engine.model_name, "messages": [QUESTION], **override}
    with pytest.raises(openai.APIStatusError) as raised:
        scripted.client(max_retries=0).chat.completions.create(**arguments)
    error = raised.value
    assert error.status_code == status
    assert set(error.body) == {"message", "type", "param", "code"}
    expected_param = param or "tool_choice.function.name"
    assert error.body["param"] == expected_param
    assert error.body["message"].startswith(f"{expected_param}: ")


def test_malformed_bodies_are_refused_and_the_server_keeps_serving(scripted):
    url = f"{scripted.server.base_url}/chat/completions"
    not_json = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    no_model = httpx.post(url, json={"messages": [QUESTION]})
    assert (no_model.status_code, no_model.json()["error"]["param"]) == (400, "model")
    unknown_route = httpx.get(f"{scripted.server.base_url}/completions")
    assert unknown_route.status_code in (404, 405) and "error" in unknown_route.json()
    response = scripted.client().chat.completions.create(
        model=scripted.engine.model_name, messages=[QUESTION]
    )
    assert response.choices[0].message.content == ANSWER


def test_history_as_the_openai_client_dumps_it_and_developer_messages_are_accepted(scripted):
    """A reply's `model_dump()` (refusal, annotations, audio, function_call: null) goes back as history."""
    client = scripted.client()
    first = client.chat.completions.create(
        model=scripted.engine.model_name,
        messages=[{"role": "developer", "content": "Answer briefly."}, QUESTION],
        tools=[WEATHER_TOOL],
        tool_choice=CALL_WEATHER,
        user="someone",
        metadata={"run": "test"},
        store=False,
        service_tier="auto",
    )
    reply = first.choices[0].message.model_dump()
    assert {"refusal", "annotations", "audio", "function_call"} <= set(reply)
    call = reply["tool_calls"][0]
    tool_result = {"role": "tool", "tool_call_id": call["id"], "content": "18C"}
    second = client.chat.completions.create(
        model=scripted.engine.model_name,
        messages=[{"role": "developer", "content": "Answer briefly."}, QUESTION, reply, tool_result],
        tools=[WEATHER_TOOL],
        extra_body={"return_token_ids": True},
    )
    assert second.choices[0].message.content == ANSWER
    prompt = scripted.engine.decode(second.model_extra["prompt_token_ids"])
    assert (
        prompt.startswith("<|im_system|>tool_declare")
        and "<|im_system|>system<|im_middle|>Answer briefly." in prompt
    )
