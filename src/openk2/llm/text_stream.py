"""A reply's text while it is generated: incremental detokenization and OpenAI's `stop` strings.

Text is released only when it is final: not the first bytes of a multi-byte character that the next
token completes, and not a tail that might still grow into a stop string. A stop string ends the
reply; neither it nor anything after it is part of the text, and the kept tokens are those generated
up to the one that completed it.
"""

from collections.abc import Callable, Sequence

_INCOMPLETE = "\ufffd"  # what a decoder shows for the leading bytes of an unfinished character


class ReplyText:
    """The text of a growing list of reply tokens (end-of-turn tokens excluded by the caller)."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        self._prefix_offset = 0  # tokens before this point never change the text again
        self._read_offset = 0
        self.text = ""  # all decoded text so far (cut at a stop string once one appeared)
        self.released = 0  # how much of `text` has been handed out
        self.stopped = False  # a stop string appeared

    def push(self, token_id: int) -> None:
        """Add one token; afterwards `stopped` says whether a stop string has just appeared."""
        self._ids.append(token_id)
        self._advance(final=False)

    def _advance(self, final: bool) -> None:
        before = self._decode(self._ids[self._prefix_offset : self._read_offset])
        after = self._decode(self._ids[self._prefix_offset :])
        if len(after) <= len(before) or (after.endswith(_INCOMPLETE) and not final):
            return
        searched_from = max(0, len(self.text) - max((len(s) for s in self._stop), default=0))
        self.text += after[len(before) :]
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        found = [at for at in (self.text.find(s, searched_from) for s in self._stop) if at >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.stopped = True

    def release(self, final: bool = False) -> str:
        """Text not yet handed out that no later token can change (with `final`: all of it)."""
        if final and not self.stopped:
            self._advance(final=True)  # a reply may end inside a character: show what there is
        end = len(self.text)
        if not final and not self.stopped:
            end -= self._held_back()
        piece = self.text[self.released : end]
        self.released = max(self.released, end)
        return piece

    def _held_back(self) -> int:
        """Length of the longest tail of the text that begins some stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
