"""`openk2 serve --teacher`: the embedded SmolLM2 answers through the same server and openai client."""

import json
from collections.abc import Iterator

import openai
import pytest

from openk2.llm.teacher import TEACHER_NAME
from openk2.llm.transformers_engine import TransformersLLM
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer


@pytest.fixture(scope="module")
def teacher_url(teacher: TransformersLLM) -> Iterator[str]:
    with BackgroundServer(create_app(teacher)) as server:  # the session's teacher, served
        yield server.base_url


def test_teacher_answers_over_http_plain_and_streaming(teacher_url):
    client = openai.OpenAI(base_url=teacher_url, api_key="EMPTY")
    question = [{"role": "user", "content": "What is the capital of France?"}]
    response = client.chat.completions.create(
        model=TEACHER_NAME, messages=question, temperature=0, max_tokens=12
    )
    assert "Paris" in response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model=TEACHER_NAME, messages=question, temperature=0, max_tokens=12, stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == response.choices[0].message.content


def test_teacher_server_answers_a_forced_tool_call_in_openai_shape(teacher_url):
    client = openai.OpenAI(base_url=teacher_url, api_key="EMPTY", max_retries=0)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                           "required": ["city"]},
        },
    }  # fmt: skip
    response = client.chat.completions.create(
        model=TEACHER_NAME,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=30,
    )
    [call] = response.choices[0].message.tool_calls
    assert response.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
