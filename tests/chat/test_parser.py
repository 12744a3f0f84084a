"""Parsing K2's generated text back into an assistant message; malformed output never raises."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openk2.chat import Message, parse, render, render_segments
from openk2.chat.tokens import CHAT_TOKENS, IM_END, TOOL_CALLS_SECTION_BEGIN, TOOL_CALLS_SECTION_END
from tests.chat.chat_dialogues import TOOLS, WEATHER_DIALOGUE

ASSISTANT_HEADER = "<|im_assistant|>assistant<|im_middle|>"
SECTION = (
    "<|tool_calls_section_begin|>"
    '<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>'
    '<|tool_call_begin|>functions.get_weather:1<|tool_call_argument_begin|>{"city": "Rome"}<|tool_call_end|>'
    "<|tool_calls_section_end|>"
)


def assistant_body(message: Message) -> str:
    """What the template renders for an assistant message as the last, open message."""
    last = render_segments([{"role": "user", "content": "q"}, message])[-1]
    return last.text if last.is_assistant else ""


def canonical(message: dict) -> dict:
    """The message as parse returns it: empty content is None beside calls, parts joined to a string."""
    parsed = Message.model_validate(message)
    content = parsed.text or (None if parsed.tool_calls else "")
    return Message(role="assistant", content=content, tool_calls=parsed.tool_calls).model_dump(
        exclude_none=True
    )


def test_plain_text_is_content_and_finishes_with_stop():
    reply = parse("Hello there.<|im_end|>")
    assert reply.message.model_dump(exclude_none=True) == {"role": "assistant", "content": "Hello there."}
    assert (reply.finish_reason, reply.error) == ("stop", None)


def test_parallel_calls_keep_the_content_before_the_section():
    reply = parse("Let me check." + SECTION + IM_END)
    assert reply.finish_reason == "tool_calls" and reply.error is None
    assert reply.message.content == "Let me check."
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in reply.message.tool_calls] == [
        ("functions.get_weather:0", "get_weather", {"city": "Paris"}),
        ("functions.get_weather:1", "get_weather", {"city": "Rome"}),
    ]


def test_calls_without_content_have_no_content():
    assert parse(SECTION).message.content is None


def test_text_after_im_end_is_ignored():
    reply = parse("Done.<|im_end|><|im_user|>user<|im_middle|>more" + SECTION)
    assert (reply.message.content, reply.message.tool_calls, reply.error) == ("Done.", None, None)


def test_whitespace_around_ids_and_arguments_is_tolerated():
    text = (
        "<|tool_calls_section_begin|>\n<|tool_call_begin|> functions.get_time:3 \n"
        "<|tool_call_argument_begin|> {} \n<|tool_call_end|>\n<|tool_calls_section_end|>\n"
    )
    call = parse(text).message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "functions.get_time:3",
        "get_time",
        "{}",
    )


def test_a_declared_tool_passes_and_an_undeclared_one_is_unknown():
    assert parse(SECTION, tools=TOOLS).error is None
    reply = parse(SECTION, tools=[TOOLS[1]])
    assert (reply.error.kind, reply.error.call_index) == ("unknown_tool", 0)


def call_text(call_id: str, arguments: str) -> str:
    return f"<|tool_call_begin|>{call_id}<|tool_call_argument_begin|>{arguments}<|tool_call_end|>"


GOOD_CALL = call_text("functions.f:0", "{}")


@pytest.mark.parametrize(
    ("text", "kind", "call_index"),
    [
        ("<|tool_calls_section_begin|>" + GOOD_CALL[:30], "truncated", 0),
        ("<|tool_calls_section_begin|><|tool_calls_section_end|>", "malformed_section", None),
        (
            "<|tool_calls_section_begin|><|tool_call_begin|>f<|tool_call_end|><|tool_calls_section_end|>",
            "malformed_section",
            0,
        ),
        (
            "<|tool_calls_section_begin|>" + call_text("get_weather", "{}") + "<|tool_calls_section_end|>",
            "bad_call_id",
            0,
        ),
        (
            "<|tool_calls_section_begin|>" + call_text("call_abc123", "{}") + "<|tool_calls_section_end|>",
            "bad_call_id",
            0,
        ),
        (
            "<|tool_calls_section_begin|>" + call_text("functions.f:x", "{}") + "<|tool_calls_section_end|>",
            "bad_call_id",
            0,
        ),
        (
            "<|tool_calls_section_begin|>"
            + call_text("functions.f:0", "[1, 2]")
            + "<|tool_calls_section_end|>",
            "bad_arguments",
            0,
        ),
        ("Sure." + GOOD_CALL, "stray_markup", None),
        ("<|tool_calls_section_end|>", "stray_markup", None),
        ("Hello <|im_user|>user<|im_middle|>hi", "stray_markup", None),
    ],
)
def test_a_reply_without_any_good_call_keeps_its_text_and_names_the_error(text, kind, call_index):
    reply = parse(text + IM_END + "ignored")
    assert (reply.error.kind, reply.error.call_index) == (kind, call_index)
    assert reply.message.content == text and reply.message.tool_calls is None
    assert reply.finish_reason == "stop"


# Tolerance, as vLLM's and SGLang's Kimi-K2 parser tests state it (our own strings).
def _section(*calls: str) -> str:
    return "<|tool_calls_section_begin|>" + "".join(calls) + "<|tool_calls_section_end|>"


def _calls(reply) -> list[tuple[str, str, str]]:
    return [(c.id, c.function.name, c.function.arguments) for c in reply.message.tool_calls or []]


def test_a_bad_call_is_reported_beside_the_good_ones():
    reply = parse(
        "Checking both. "
        + _section(
            call_text("functions.get_weather:0", '{"city": "Oslo"'),
            call_text("functions.get_weather:1", '{"city": "Rome"}'),
        )
    )
    assert _calls(reply) == [("functions.get_weather:1", "get_weather", '{"city": "Rome"}')]
    assert [(e.kind, e.call_index) for e in reply.errors] == [("bad_arguments", 0)]
    assert reply.message.content == "Checking both. " and reply.finish_reason == "tool_calls"


def test_a_call_with_a_malformed_id_is_skipped_and_the_next_kept():
    reply = parse(
        _section(call_text("functions.lookup.0", '{"q": 1}'), call_text("functions.search:1", '{"q": 2}'))
    )
    assert _calls(reply) == [("functions.search:1", "search", '{"q": 2}')]
    assert [(e.kind, e.call_index) for e in reply.errors] == [("bad_call_id", 0)]


def test_ids_without_the_functions_prefix_take_the_k2_form():
    reply = parse(_section(call_text("get_weather:0", "{}"), call_text(" list-files:1 ", "{}")))
    assert _calls(reply) == [
        ("functions.get_weather:0", "get_weather", "{}"),
        ("functions.list-files:1", "list-files", "{}"),
    ]
    assert reply.errors == []


def test_dialogue_wide_indices_are_kept_and_error_indices_count_within_the_reply():
    reply = parse(
        _section(
            call_text("functions.a:5", "{}"),
            call_text("functions.b:6", "nope"),
            call_text("functions.c:7", "{}"),
        )
    )
    assert [c.id for c in reply.message.tool_calls] == ["functions.a:5", "functions.c:7"]
    assert [(e.kind, e.call_index) for e in reply.errors] == [("bad_arguments", 1)]


def test_several_sections_all_count():
    reply = parse(
        "A"
        + _section(call_text("functions.a:0", "{}"))
        + " B "
        + _section(call_text("functions.b:1", '{"x": 1}'))
    )
    assert [c.function.name for c in reply.message.tool_calls] == ["a", "b"]
    assert reply.message.content == "A B " and reply.errors == []


def test_a_cut_off_last_call_is_reported_truncated_and_the_finished_ones_kept():
    reply = parse(
        "<|tool_calls_section_begin|>"
        + call_text("functions.a:0", '{"k": "v"}')
        + '<|tool_call_begin|>functions.b:1<|tool_call_argument_begin|>{"k"'
    )
    assert _calls(reply) == [("functions.a:0", "a", '{"k": "v"}')]
    assert [(e.kind, e.call_index) for e in reply.errors] == [("truncated", 1)]


def test_a_section_without_its_end_keeps_its_complete_calls():
    reply = parse("Hi <|tool_calls_section_begin|>" + GOOD_CALL)
    assert _calls(reply) == [("functions.f:0", "f", "{}")]
    assert [(e.kind, e.call_index) for e in reply.errors] == [("unclosed_section", None)]


def test_text_inside_a_section_is_reported_and_the_call_kept():
    reply = parse("<|tool_calls_section_begin|>" + GOOD_CALL + "text<|tool_calls_section_end|>")
    assert _calls(reply) == [("functions.f:0", "f", "{}")]
    assert [e.kind for e in reply.errors] == ["malformed_section"]


def test_a_call_running_into_the_next_one_is_malformed():
    reply = parse(
        _section(
            GOOD_CALL,
            "<|tool_call_begin|>functions.f:1<|tool_call_argument_begin|>{}",
            call_text("functions.g:2", "{}"),
        )
    )
    assert [c.id for c in reply.message.tool_calls] == ["functions.f:0", "functions.g:2"]
    assert [(e.kind, e.call_index) for e in reply.errors] == [("malformed_section", 1)]


def test_text_after_the_section_joins_the_content():
    reply = parse(_section(GOOD_CALL) + "and more")
    assert reply.message.content == "and more" and reply.errors == []


def test_markup_outside_a_section_is_removed_from_the_content_and_reported():
    reply = parse("normal text<|tool_calls_section_end|>" + _section(GOOD_CALL))
    assert reply.message.content == "normal text"
    assert [e.kind for e in reply.errors] == ["stray_markup"]


@pytest.mark.parametrize(
    "arguments",
    [
        '{"html": "<div>content</div>", "text": "normal text"}',
        '{\n  "name": "test",\n  "nested": {"key": "value"}\n}',
    ],
)
def test_arguments_with_angle_brackets_and_newlines_are_kept_verbatim(arguments):
    reply = parse(
        "Processing. <|tool_calls_section_begin|> <|tool_call_begin|>\nfunctions.process:0 <|tool_call_argument_begin|> "
        + arguments
        + " <|tool_call_end|> <|tool_calls_section_end|>"
    )
    assert _calls(reply) == [("functions.process:0", "process", arguments)]
    assert reply.message.content == "Processing. "


def test_plain_text_without_tools_is_all_content():
    reply = parse("This is a test")
    assert (reply.message.content, reply.message.tool_calls, reply.errors) == ("This is a test", None, [])


def test_render_then_parse_gives_back_every_assistant_message():
    for position, message in enumerate(WEATHER_DIALOGUE):
        if message["role"] != "assistant":
            continue
        rendered = render(WEATHER_DIALOGUE[: position + 1], TOOLS)
        reply = parse(rendered.rsplit(ASSISTANT_HEADER, 1)[1], tools=TOOLS)
        assert reply.error is None
        assert reply.message.model_dump(exclude_none=True) == canonical(message)


no_chat_tokens = st.text(max_size=20).filter(lambda text: not any(token in text for token in CHAT_TOKENS))
json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
arguments = st.builds(
    json.dumps, st.dictionaries(st.text(max_size=6), json_values, max_size=3), ensure_ascii=st.booleans()
)
tool_calls = st.lists(
    st.builds(
        lambda name, args: {"type": "function", "function": {"name": name, "arguments": args}},
        st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
        arguments,
    ),
    max_size=3,
)
assistant_messages = st.builds(
    lambda content, calls: {"role": "assistant", "content": content, "tool_calls": calls or None},
    st.one_of(st.none(), no_chat_tokens),
    tool_calls,
)


@settings(max_examples=150, deadline=None)
@given(assistant_messages)
def test_render_then_parse_round_trips_any_assistant_message(message):
    rendered = render([{"role": "user", "content": "q"}, message], add_generation_prompt=False)
    reply = parse(rendered.rsplit(ASSISTANT_HEADER, 1)[1] + IM_END)
    assert reply.error is None
    expected = canonical(message)
    for position, call in enumerate(expected.get("tool_calls", [])):
        call["id"] = f"functions.{call['function']['name']}:{position}"
    assert reply.message.model_dump(exclude_none=True) == expected
    assert reply.finish_reason == ("tool_calls" if message["tool_calls"] else "stop")


markup_heavy_text = st.lists(
    st.one_of(
        st.sampled_from(
            [*CHAT_TOKENS, "functions.get_weather:0", "functions.f", ":1", '{"a": 1}', "{", "[]", " ", "\n"]
        ),
        st.text(max_size=6),
    ),
    max_size=14,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(markup_heavy_text)
def test_any_text_parses_without_raising_and_parsing_is_a_fixed_point(text):
    reply = parse(text)
    assert reply.message.role == "assistant"
    assert (reply.finish_reason == "tool_calls") == bool(reply.message.tool_calls)
    assert reply.error == (reply.errors[0] if reply.errors else None)
    if reply.errors and not reply.message.tool_calls:
        assert reply.message.content == text.split(IM_END, 1)[0]
    # Rendering what was parsed and parsing it again gives the same message (and, without rescued
    # calls, the same errors: rescued calls render without the faults that were left out).
    again = parse(assistant_body(reply.message))
    assert again.message == reply.message
    if not reply.message.tool_calls:
        assert again == reply


@settings(max_examples=200, deadline=None)
@given(assistant_messages, st.data())
def test_truncated_output_never_raises(message, data):
    body = render([{"role": "user", "content": "q"}, message]).rsplit(ASSISTANT_HEADER, 1)[1]
    prefix = body[: data.draw(st.integers(0, len(body)))]
    reply = parse(prefix)
    if TOOL_CALLS_SECTION_BEGIN in prefix and TOOL_CALLS_SECTION_END not in prefix:
        assert reply.error.kind in {"unclosed_section", "truncated"}
