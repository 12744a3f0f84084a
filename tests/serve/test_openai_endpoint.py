"""The HTTP back end of the LLM interface (official openai client) against our own loopback server."""

import asyncio
import gc
import json
import socket
import warnings
import weakref

import openai
import pytest

from openk2.chat import ChatFormatError
from openk2.llm import LLMConfig, ModelUnavailable, SamplingParams, chat_request, load_llm
from openk2.llm.openai_endpoint import OpenAIEndpoint
from tests.llm.checkpoints import ANSWER, ARGUMENTS, CLOCK_TOOL, FORECAST_TOOL

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture
def endpoint(scripted) -> OpenAIEndpoint:
    llm = load_llm(LLMConfig(backend="endpoint", base_url=scripted.server.base_url))  # model from /v1/models
    assert isinstance(llm, OpenAIEndpoint)
    return llm


def test_endpoint_chat_equals_the_in_process_engine(scripted, endpoint):
    remote = endpoint.chat(QUESTION, sampling=SamplingParams(temperature=0))
    local = scripted.engine.chat(QUESTION, sampling=SamplingParams(temperature=0))
    assert remote.model == endpoint.model_name == scripted.engine.model_name
    assert remote.message == local.message
    assert remote.usage == local.usage
    assert remote.finish_reason == local.finish_reason == "stop"


def test_endpoint_tool_call_keeps_k2_ids_and_returns_the_token_span(scripted, endpoint):
    reply = endpoint.chat(QUESTION, [WEATHER_TOOL], SamplingParams(return_tokens=True), CALL_WEATHER)
    [call] = reply.message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (
        "functions.get_weather:0",
        "get_weather",
        ARGUMENTS,
    )
    assert reply.finish_reason == "tool_calls"
    local = scripted.engine.chat(QUESTION, [WEATHER_TOOL], SamplingParams(return_tokens=True), CALL_WEATHER)
    assert reply.tokens.prompt_token_ids == local.tokens.prompt_token_ids
    assert reply.tokens.token_ids == local.tokens.token_ids
    assert reply.tokens.sampled == local.tokens.sampled
    assert reply.tokens.logprobs == pytest.approx(local.tokens.logprobs, abs=1e-4)


def test_batch_and_async_calls_are_served_concurrently(scripted, endpoint):
    before = scripted.engine.scheduler.stats.finished
    replies = endpoint.chat_batch([chat_request(QUESTION) for _ in range(8)])
    assert [reply.message.content for reply in replies] == [ANSWER] * 8

    async def ask() -> list[str]:
        replies = await asyncio.gather(*(endpoint.achat(chat_request(QUESTION)) for _ in range(4)))
        return [reply.message.content for reply in replies]

    assert asyncio.run(ask()) == [ANSWER] * 4
    assert scripted.engine.scheduler.stats.finished == before + 12


def test_each_event_loop_closes_its_connections_and_is_not_kept_alive(endpoint):
    async def ask() -> tuple[list[str], weakref.ref]:
        replies = await asyncio.gather(*(endpoint.achat(chat_request(QUESTION)) for _ in range(3)))
        return [reply.message.content for reply in replies], weakref.ref(asyncio.get_running_loop())

    gc.collect()  # what earlier tests left unclosed is not this test's to report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = [asyncio.run(ask()) for _ in range(2)]  # a second loop after the first has closed
        gc.collect()
    assert [answers for answers, _ in runs] == [[ANSWER] * 3] * 2
    assert [loop() for _, loop in runs] == [None, None]
    # a connection collected without being closed would warn "unclosed transport"
    assert not [str(warning.message) for warning in caught if issubclass(warning.category, ResourceWarning)]


def test_server_side_request_errors_arrive_naming_the_field(endpoint):
    with pytest.raises(ChatFormatError, match=r"^max_tokens: 100000 after a"):
        endpoint.chat(QUESTION, sampling=SamplingParams(max_tokens=100_000))


def test_unreachable_endpoint_fails_after_its_retries():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = OpenAIEndpoint(f"http://127.0.0.1:{port}/v1", "any", timeout_s=2, max_retries=1)
    with pytest.raises(ModelUnavailable, match=rf"^http://127.0.0.1:{port}/v1: Connection error") as raised:
        unreachable.chat(QUESTION)
    assert isinstance(raised.value.__cause__, openai.APIConnectionError)


def test_slow_endpoint_times_out(untrained):
    slow = OpenAIEndpoint(
        untrained.server.base_url, untrained.engine.model_name, timeout_s=0.05, max_retries=0
    )
    with pytest.raises(ModelUnavailable, match="timed out") as raised:
        slow.chat(QUESTION, sampling=SamplingParams(temperature=0, max_tokens=400))
    assert isinstance(raised.value.__cause__, openai.APITimeoutError)


def test_endpoint_refuses_token_prompts_naming_the_field(endpoint):
    with pytest.raises(ChatFormatError, match=r"^prompt_token_ids: "):
        endpoint.chat_batch([chat_request(QUESTION, prompt_token_ids=[1, 2, 3])])


def test_endpoint_carries_structured_output_and_the_sampling_extras(random_model):
    """response_format, parallel_tool_calls, penalties, top_k and top_logprobs reach the server and back."""
    endpoint = load_llm(LLMConfig(backend="endpoint", base_url=random_model.server.base_url))
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    sampling = SamplingParams(
        temperature=1.0, seed=3, top_k=50, frequency_penalty=0.5, return_tokens=True, top_logprobs=2
    )
    reply = endpoint.chat_batch(
        [
            chat_request(
                QUESTION, sampling=sampling, response_format={"type": "json_schema", "json_schema": schema}
            )
        ]
    )[0]
    assert json.loads(reply.message.content) in ({"ok": True}, {"ok": False})
    local = random_model.engine.chat_batch(
        [
            chat_request(
                QUESTION, sampling=sampling, response_format={"type": "json_schema", "json_schema": schema}
            )
        ]
    )[0]
    assert reply.tokens.token_ids == local.tokens.token_ids  # the same request, served the same way
    assert [sorted(top) for top in reply.tokens.top_logprobs] == [
        sorted(top) for top in local.tokens.top_logprobs
    ]
    single = endpoint.chat(
        QUESTION,
        [FORECAST_TOOL, CLOCK_TOOL],
        SamplingParams(temperature=1.0, seed=1),
        "required",
    )
    assert single.finish_reason == "tool_calls"
