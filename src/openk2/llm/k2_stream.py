"""K2 replies streamed as OpenAI deltas: content as it comes, tool calls as vLLM streams Kimi-K2 calls.

A call's first delta carries its index, id and name, as soon as the id is complete; then its
arguments follow in fragments as they are generated. Markup never reaches the content; a tail that
may be the beginning of a markup token is held back until the next text decides it. A call whose
id is malformed or names an undeclared tool is not streamed (the final parse reports it); a call
whose arguments turn out not to be a JSON object has been streamed, and the final chunk's
`parse_errors` name it, as the non-streamed reply does.
"""

from openk2.chat.call_ids import format_call_id
from openk2.chat.parser import LENIENT_CALL_ID
from openk2.chat.tokens import (
    CHAT_TOKENS,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALL_END,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
)
from openk2.llm.engine import ReplyStream
from openk2.llm.types import ToolCallDelta


def _partial_markup(text: str) -> int:
    """Length of the longest tail of `text` that is a proper beginning of a markup token."""
    for size in range(min(len(text), max(len(token) for token in CHAT_TOKENS) - 1), 0, -1):
        tail = text[-size:]
        if any(token.startswith(tail) and token != tail for token in CHAT_TOKENS):
            return size
    return 0


class K2ReplyStream(ReplyStream):
    def __init__(self, known_tools: set[str] | None, calls_allowed: bool = True) -> None:
        self._known_tools = known_tools
        self._calls_allowed = calls_allowed  # tool_choice "none": the reply ends where a section begins
        self._buffer = ""
        self._state = "content"  # content | section | call_id | arguments | skip_call | done
        self._streamed_calls = 0
        self._arguments_started = False
        self._pending_space = ""  # whitespace inside arguments, sent only if more arguments follow

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        self._buffer += text
        return self._drain(final=False)

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        return self._drain(final=True)

    def _drain(self, final: bool) -> tuple[str, list[ToolCallDelta]]:
        content: list[str] = []
        calls: list[ToolCallDelta] = []
        while self._buffer and self._step(content, calls, final):
            pass
        return "".join(content), calls

    def _take_until(self, marker: str, final: bool) -> tuple[str, bool]:
        """(the text before `marker`, whether the marker was found); holds back a possible partial marker."""
        at = self._buffer.find(marker)
        if at >= 0:
            before, self._buffer = self._buffer[:at], self._buffer[at + len(marker) :]
            return before, True
        keep = 0 if final else _partial_markup(self._buffer)
        before, self._buffer = (
            self._buffer[: len(self._buffer) - keep],
            self._buffer[len(self._buffer) - keep :],
        )
        return before, False

    def _step(self, content: list[str], calls: list[ToolCallDelta], final: bool) -> bool:
        """Consume what the buffer allows in the current state; False when it must wait for more text."""
        state = self._state
        if state == "done":
            self._buffer = ""
            return False
        if state == "content":
            before, found = self._take_until(TOOL_CALLS_SECTION_BEGIN, final)
            content.append(before.replace(TOOL_CALLS_SECTION_END, "").replace(TOOL_CALL_END, ""))
            if found:
                self._state = "section" if self._calls_allowed else "done"
            return found
        if state == "section":
            stripped = self._buffer.lstrip()
            if stripped.startswith(TOOL_CALL_BEGIN):
                self._buffer, self._state = stripped[len(TOOL_CALL_BEGIN) :], "call_id"
                return True
            if stripped.startswith(TOOL_CALLS_SECTION_END):
                self._buffer, self._state = stripped[len(TOOL_CALLS_SECTION_END) :], "content"
                return True
            if _partial_markup(stripped) == len(stripped) and not final:
                return False  # not decided yet
            self._state = "skip_call"  # text that is no call: the final parse reports it
            return True
        if state == "call_id":
            call_id, found = self._take_until(TOOL_CALL_ARGUMENT_BEGIN, final)
            if not found:
                self._buffer = call_id + self._buffer  # wait for the whole id
                return False
            parsed = LENIENT_CALL_ID.fullmatch(call_id.strip())
            name = parsed["name"] if parsed else None
            if parsed is None or (self._known_tools is not None and name not in self._known_tools):
                self._state = "skip_call"
                return True
            assert name is not None
            call_id = format_call_id(name, int(parsed["index"]))
            calls.append(ToolCallDelta(self._streamed_calls, call_id, name))
            self._state = "arguments"
            return True
        if state == "arguments":
            arguments, found = self._take_until(TOOL_CALL_END, final)
            if not self._arguments_started:
                arguments = arguments.lstrip()  # whitespace around the arguments is not theirs
            text = self._pending_space + arguments
            body = text.rstrip()
            self._pending_space = text[len(body) :]
            if body:
                calls.append(ToolCallDelta(self._streamed_calls, arguments=body))
                self._arguments_started = True
            if found:
                self._streamed_calls += 1
                self._state, self._arguments_started, self._pending_space = "section", False, ""
            return found
        # skip_call: up to the end of this call, or of the section
        at_call_end = self._buffer.find(TOOL_CALL_END)
        at_section_end = self._buffer.find(TOOL_CALLS_SECTION_END)
        ends = [at for at in (at_call_end, at_section_end) if at >= 0]
        if not ends:
            self._buffer = self._buffer[len(self._buffer) - _partial_markup(self._buffer) :]
            return False
        if at_call_end >= 0 and at_call_end == min(ends):
            self._buffer = self._buffer[at_call_end + len(TOOL_CALL_END) :]
            self._state = "section"
        else:
            self._buffer = self._buffer[at_section_end + len(TOOL_CALLS_SECTION_END) :]
            self._state = "content"
        return True
