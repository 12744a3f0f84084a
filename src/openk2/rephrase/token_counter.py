"""Token counts for chunking, context windows and the length check, from one HF tokenizer.

The rewrite model's own tokenizer is not reachable through an endpoint, so the recipe names one:
"teacher" (the embedded SmolLM2's BPE), a checkpoint directory, or any tokenizer.json, e.g. the one
`openk2 tokenize` trained; `openk2.llm.tokenizer_file` finds the file.
"""

import hashlib

from tokenizers import Tokenizer

from openk2.llm import tokenizer_file

MAX_WORD_CHARS = 32  # a longer run without whitespace is not one word
# `tail` tokenizes only the end of a text: a window of this many characters per token asked for, doubled
# until it holds more tokens than asked; the tokens at the window's cut edge (which may differ from the
# whole text's) stay out of the tail. So a context costs the same at chunk 2,000 as at chunk 2.
TAIL_WINDOW_CHARS_PER_TOKEN = 8
TAIL_MARGIN_TOKENS = 16


class TokenCounter:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, name: str) -> "TokenCounter":
        path = tokenizer_file(name)
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as error:  # tokenizers raises a bare Exception for a missing or bad file
            raise ValueError(f"[rephrase].tokenizer: cannot load {path} ({error})") from error

    def digest(self) -> str:
        """A hash of the tokenizer: the same text must chunk the same way when a run resumes."""
        return hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()

    def __call__(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def tail(self, text: str, budget: int) -> str:
        """The end of `text` within `budget` tokens, starting at a word boundary."""
        window = TAIL_WINDOW_CHARS_PER_TOKEN * (budget + TAIL_MARGIN_TOKENS)
        while True:
            offset = max(0, len(text) - window)
            encoding = self.tokenizer.encode(text[offset:], add_special_tokens=False)
            if offset == 0 or len(encoding.ids) > budget + TAIL_MARGIN_TOKENS:
                break
            window *= 2
        if len(encoding.ids) <= budget:  # the whole text (offset 0) fits
            return text
        if budget == 0:
            return ""
        start = offset + encoding.offsets[len(encoding.ids) - budget][0]
        if start > 0 and not text[start - 1].isspace():  # the cut fell inside a word: drop its piece
            # no space nearby (Chinese, a long URL): the token cut stands
            nearby = range(start, min(len(text), start + MAX_WORD_CHARS))
            start = next((i for i in nearby if text[i].isspace()), start)
        return text[start:].lstrip()
