"""The in-process OpenK2 back end: K2 template in, parsed assistant message (and token span) out."""

import pytest
import torch

from openk2.chat import ChatFormatError, render_tokens
from openk2.chat.tokens import IM_END, TOOL_CALL_ARGUMENT_BEGIN
from openk2.llm import SamplingParams, chat_request
from tests.llm.checkpoints import ANSWER, ARGUMENTS, WEATHER_TOOL

GREEDY = SamplingParams(temperature=0.0)
NAMED = {"type": "function", "function": {"name": "get_weather"}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_plain_reply_ends_at_im_end_with_usage(scripted_engine):
    reply = scripted_engine.chat(QUESTION, sampling=SamplingParams(temperature=1.0, return_tokens=True))
    assert reply.message.role == "assistant"
    assert reply.message.content == ANSWER
    assert reply.finish_reason == "stop"
    assert reply.error is None
    assert reply.tokens is not None
    assert reply.tokens.token_ids[-1] == scripted_engine.tokenizer.token_to_id(IM_END)
    assert scripted_engine.decode(reply.tokens.token_ids[:-1]) == ANSWER
    assert reply.usage.prompt_tokens == len(reply.tokens.prompt_token_ids)
    assert reply.usage.completion_tokens == len(reply.tokens.token_ids)


def test_prompt_is_the_sft_tokenisation_plus_the_generation_prompt(scripted_engine):
    """The engine reads a conversation token for token as SFT trained on it (render_tokens)."""
    dialogue = [
        *QUESTION,
        {"role": "assistant", "content": "Let me check."},
        {"role": "user", "content": "Now?"},
    ]
    request = chat_request(dialogue, [WEATHER_TOOL])
    trained, _ = render_tokens(scripted_engine.tokenizer, dialogue, [WEATHER_TOOL])
    assert scripted_engine.prompt_ids(request) == trained + scripted_engine.encode(
        "<|im_assistant|>assistant<|im_middle|>"
    )


def test_named_tool_choice_forces_a_call_with_the_dialogue_wide_k2_id(scripted_engine):
    earlier_call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
        ],
    }
    dialogue = [
        *QUESTION,
        earlier_call,
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "21C"},
        {"role": "user", "content": "And Paris?"},
    ]
    reply = scripted_engine.chat(dialogue, [WEATHER_TOOL], SamplingParams(return_tokens=True), NAMED)
    assert reply.finish_reason == "tool_calls"
    assert reply.error is None
    [call] = reply.message.tool_calls
    assert call.id == "functions.get_weather:1"  # K2 counts every call of the dialogue from 0
    assert call.function.name == "get_weather"
    assert call.function.arguments == ARGUMENTS
    forced = scripted_engine.encode(
        f"<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:1{TOOL_CALL_ARGUMENT_BEGIN}"
    )
    tokens = reply.tokens
    assert tokens.token_ids[: len(forced)] == forced
    assert tokens.sampled == [False] * len(forced) + [True] * (len(tokens.token_ids) - len(forced))


def test_a_call_the_model_writes_itself_is_parsed_under_auto(tool_calling_engine):
    reply = tool_calling_engine.chat(QUESTION, [WEATHER_TOOL], SamplingParams(return_tokens=True))
    assert reply.finish_reason == "tool_calls"
    assert reply.error is None
    [call] = reply.message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (
        "functions.get_weather:0",
        "get_weather",
        ARGUMENTS,
    )
    assert all(reply.tokens.sampled)  # nothing was forced


def test_tool_choice_none_cuts_the_reply_where_a_section_would_begin(tool_calling_engine):
    reply = tool_calling_engine.chat(QUESTION, [WEATHER_TOOL], SamplingParams(), "none")
    assert reply.message.tool_calls is None
    assert reply.message.content == ""
    assert reply.finish_reason == "stop"


def test_a_call_to_an_undeclared_tool_is_reported(tool_calling_engine):
    other_tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    reply = tool_calling_engine.chat(QUESTION, [other_tool])
    assert reply.message.tool_calls is None
    assert reply.error is not None and reply.error.kind == "unknown_tool"
    assert reply.finish_reason == "stop"


def test_stop_string_and_max_tokens_end_the_reply(scripted_engine):
    stopped = scripted_engine.chat(QUESTION, sampling=SamplingParams(temperature=0, stop=(",",)))
    assert (stopped.message.content, stopped.finish_reason) == ("Sunny", "stop")
    truncated = scripted_engine.chat(QUESTION, sampling=SamplingParams(temperature=0, max_tokens=2))
    assert truncated.finish_reason == "length"
    assert truncated.usage.completion_tokens == 2
    assert ANSWER.startswith(truncated.message.content)


def test_truncated_tool_call_is_reported_as_a_parse_error_not_raised(scripted_engine):
    reply = scripted_engine.chat(
        QUESTION, [WEATHER_TOOL], SamplingParams(temperature=0, max_tokens=14), NAMED
    )
    assert reply.finish_reason == "length"
    assert reply.message.tool_calls is None
    assert reply.message.content.startswith("<|tool_calls_section_begin|>")
    assert reply.error is not None and (reply.error.kind, reply.error.call_index) == ("truncated", 0)


def test_batched_generation_equals_one_by_one(untrained_engine):
    """Rows of different prompt lengths and samplings are grouped, generated, and returned in order."""
    prompts = ["Hi", "What is the weather in Paris?", "Hi", "Use the tool.", "What is the weather in Rome?"]
    samplings = [GREEDY, GREEDY, SamplingParams(temperature=0.0, max_tokens=5), GREEDY, GREEDY]
    requests = [
        chat_request(
            [{"role": "user", "content": text}], sampling=sampling.model_copy(update={"max_tokens": 12})
        )
        for text, sampling in zip(prompts, samplings, strict=True)
    ]
    batched = untrained_engine.chat_batch(requests)
    alone = [untrained_engine.chat_batch([request])[0] for request in requests]
    assert [reply.message.content for reply in batched] == [reply.message.content for reply in alone]
    assert len({reply.message.content for reply in batched}) > 1  # the prompts do lead to different replies


def test_seed_makes_sampling_reproducible(untrained_engine):
    def sample(seed: int) -> str:
        sampling = SamplingParams(temperature=1.0, max_tokens=16, seed=seed)
        return untrained_engine.chat(QUESTION, sampling=sampling).message.content

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_logprobs_are_those_of_the_sampling_distribution(untrained_engine):
    """Checked against a step-by-step re-forward of the growing sequence: a different code path."""
    temperature = 0.7
    reply = untrained_engine.chat(
        QUESTION, sampling=SamplingParams(temperature=temperature, max_tokens=6, seed=3, return_tokens=True)
    )
    tokens = reply.tokens
    assert tokens.temperature == temperature
    sequence = list(tokens.prompt_token_ids)
    expected = []
    with torch.no_grad():
        for token in tokens.token_ids:
            logits = untrained_engine.model(torch.tensor([sequence])).logits[0, -1]
            expected.append((logits / temperature).log_softmax(-1)[token].item())
            sequence.append(token)
    assert tokens.logprobs == pytest.approx(expected, abs=1e-4)


def test_request_errors_name_the_field(scripted_engine):
    with pytest.raises(ChatFormatError, match=r"^max_tokens: 5000 after a \d+-token prompt"):
        scripted_engine.chat(QUESTION, sampling=SamplingParams(max_tokens=5000))
    with pytest.raises(ChatFormatError, match=r"^messages: the prompt is \d+ tokens"):
        scripted_engine.chat([{"role": "user", "content": "Paris " * 2000}])
    with pytest.raises(ChatFormatError, match=r"^tool_choice.function.name: 'nope'"):
        scripted_engine.chat(
            QUESTION, [WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}
        )
    with pytest.raises(ChatFormatError, match=r"^messages\[0\].content: required"):
        scripted_engine.chat([{"role": "user"}])


def test_token_continuation_of_a_sampled_turn_equals_the_fresh_rendering(scripted_engine):
    """A rollout's running sequence (prompt + sampled reply + continuation ids) is what the template gives
    for the whole dialogue, when the reply's tokens are the template's own."""
    request = chat_request(QUESTION, [WEATHER_TOOL], SamplingParams(temperature=0.0, return_tokens=True))
    reply = scripted_engine.chat_batch([request])[0]
    assert reply.tokens is not None
    follow_up = [{"role": "user", "content": "And tomorrow?"}]
    running = reply.tokens.prompt_token_ids + reply.tokens.token_ids
    running += scripted_engine.continuation_ids(
        [*request.messages, reply.message], chat_request(follow_up).messages, request.tools
    )
    dialogue = chat_request([*QUESTION, reply.message.model_dump(), *follow_up], [WEATHER_TOOL])
    assert running == scripted_engine.prompt_ids(dialogue)


def test_a_request_with_prompt_token_ids_continues_exactly_those_tokens(scripted_engine):
    rendered = chat_request(QUESTION, [WEATHER_TOOL], SamplingParams(temperature=0.0, return_tokens=True))
    as_tokens = chat_request(
        QUESTION,
        [WEATHER_TOOL],
        SamplingParams(temperature=0.0, return_tokens=True),
        prompt_token_ids=scripted_engine.prompt_ids(rendered),
    )
    shortened = chat_request(
        QUESTION,
        [WEATHER_TOOL],
        SamplingParams(temperature=0.0, return_tokens=True),
        prompt_token_ids=scripted_engine.prompt_ids(rendered)[:-3],
    )
    first, second, third = scripted_engine.chat_batch([rendered, as_tokens, shortened])
    assert second.tokens.prompt_token_ids == first.tokens.prompt_token_ids
    assert second.tokens.token_ids == first.tokens.token_ids
    assert third.tokens.prompt_token_ids == first.tokens.prompt_token_ids[:-3]
    with pytest.raises(ChatFormatError, match="prompt_token_ids"):
        chat_request(QUESTION, prompt_token_ids=[])
