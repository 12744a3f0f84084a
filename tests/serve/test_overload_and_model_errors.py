"""Overload answers 429 at once, a cut-off reply is reported rather than crashing, and serving goes on."""

import asyncio

import httpx

QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_overload_answers_429_in_openai_shape_and_the_server_recovers(untrained):
    """Queue of one, batches of one: of six simultaneous slow requests, some must be refused."""
    url = f"{untrained.server.base_url}/chat/completions"
    body = {"model": untrained.engine.model_name, "messages": [QUESTION], "max_tokens": 120, "temperature": 0}

    async def six_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(url, json=body) for _ in range(6)))

    responses = asyncio.run(six_at_once())
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) == {200, 429}
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.json()["error"]["code"] == "server_overloaded"
    assert httpx.post(url, json={**body, "max_tokens": 4}).status_code == 200


def test_a_call_cut_off_by_its_budget_comes_back_as_text_with_the_parse_error(untrained):
    """Under tool_choice=required the grammar keeps the call valid, but 16 tokens cannot hold it."""
    response = httpx.post(
        f"{untrained.server.base_url}/chat/completions",
        json={
            "model": untrained.engine.model_name,
            "messages": [QUESTION],
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
            "max_tokens": 16,
            "temperature": 0,
        },
        timeout=60,
    )
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["content"].startswith(
        "<|tool_calls_section_begin|><|tool_call_begin|>functions."
    )
    assert choice["parse_error"]["kind"] == "truncated"
    assert [error["kind"] for error in choice["parse_errors"]] == ["truncated"]
    assert choice["parse_error"]["detail"]
    assert choice["finish_reason"] == "length"
