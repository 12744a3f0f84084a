"""Grammar-constrained decoding with llguidance: which tokens may come next, so the output must parse.

A grammar is a Lark text (llguidance's dialect): `%json {schema}` embeds a JSON Schema, `<[id]>` one
token by id (K2's tool-call markers are single tokens). A `TokenMatcher` follows one reply token by
token and gives the mask of allowed next tokens; once the grammar is complete only the end-of-turn
tokens remain allowed. A `GrammarPlan` may wait for a trigger text before it starts: that is K2's
"enforcer" (report App. B), which imposes the call format and the arguments' schema once the model
opens a tool-calls section by itself.

llguidance is what SGLang and vLLM use; its CPU wheel is self-contained (no torch, no triton).
"""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import llguidance
import numpy as np
import torch

from openk2.chat import ChatFormatError

# JSON as K2's template writes arguments (`json.dumps` defaults): ", " and ": ", no other whitespace.
COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def json_rule(schema: Mapping[str, Any]) -> str:
    """A Lark fragment accepting exactly the compact JSON texts that `schema` accepts."""
    return "%json " + json.dumps({**schema, "x-guidance": COMPACT_JSON})


def lark_literal(text: str) -> str:
    """`text` as a Lark string literal."""
    return json.dumps(text)


def _reason(problem: str) -> str:
    """llguidance's message without its excerpt of our generated grammar (position, source lines, carets)."""
    lines = [line for line in problem.splitlines() if not re.match(r"^\s*(\d+ \||\^+\s*$|$)", line)]
    return re.sub(r"^at \d+\(\d+\): ", "", " ".join(" ".join(lines).split()))


def _subschemas(schema: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The schemas nested in `schema`, with their paths (`.properties.city`, `.items`, `.anyOf[1]`)."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        for name, part in (schema.get(key) or {}).items():
            found.append((f".{key}.{name}", part))
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), Mapping):
            found.append((f".{key}", schema[key]))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        found += [
            (f".{key}[{i}]", part)
            for i, part in enumerate(schema.get(key) or [])
            if isinstance(part, Mapping)
        ]
    return [(path, part) for path, part in found if isinstance(part, Mapping)]


@dataclass(frozen=True)
class GrammarPlan:
    """A grammar for one reply: active from the first token, or from the end of `trigger` on."""

    lark: str
    field: str  # the request field the grammar comes from, named when it cannot be compiled
    trigger: str | None = None


class GrammarCompiler:
    """Compiles grammars for one tokenizer and model vocabulary."""

    def __init__(self, tokenizer_json: str, vocab_size: int, end_ids: Sequence[int]) -> None:
        self.vocab_size = vocab_size
        self._tokenizer = llguidance.LLTokenizer(tokenizer_json, n_vocab=vocab_size, eos_token=list(end_ids))
        self._checked: dict[str, str] = {}  # lark -> compiled grammar, for repeated requests

    def check(self, plan: GrammarPlan) -> str:
        """The compiled grammar; a grammar that does not compile is the request's fault (ChatFormatError)."""
        if plan.lark not in self._checked:
            grammar = llguidance.LLMatcher.grammar_from_lark(plan.lark)
            problem = llguidance.LLMatcher.validate_grammar(grammar, self._tokenizer)
            if problem and not problem.startswith("WARNING"):
                raise ChatFormatError(f"{plan.field}: cannot be compiled to a grammar: {_reason(problem)}")
            self._checked[plan.lark] = grammar
        return self._checked[plan.lark]

    def schema_problem(self, schema: Mapping[str, Any]) -> tuple[str, str] | None:
        """(path inside `schema`, reason) of the deepest part the library cannot compile, or None."""
        problem = llguidance.LLMatcher.validate_grammar(
            llguidance.LLMatcher.grammar_from_lark(f"start: {json_rule(schema)}"), self._tokenizer
        )
        if not problem or problem.startswith("WARNING"):
            return None
        for path, part in _subschemas(schema):
            deeper = self.schema_problem(part)
            if deeper is not None:
                return path + deeper[0], deeper[1]
        return "", _reason(problem)

    def matcher(self, plan: GrammarPlan) -> "TokenMatcher":
        return TokenMatcher(
            llguidance.LLMatcher(self._tokenizer, self.check(plan), log_level=0), self.vocab_size
        )


class TokenMatcher:
    """One reply's position in its grammar."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size

    def allowed(self) -> torch.Tensor:
        """[vocab] bool: the tokens the grammar allows next (only end-of-turn once it is complete)."""
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        return torch.from_numpy(np.unpackbits(bits, bitorder="little")[: self._vocab_size].astype(bool))

    def consume(self, token_ids: Sequence[int]) -> None:
        if not self._matcher.consume_tokens(list(token_ids)):
            raise RuntimeError(f"grammar: tokens {list(token_ids)} rejected: {self._matcher.get_error()}")

    @property
    def failed(self) -> str:
        """Why the matcher stopped following the reply; '' while it follows it."""
        return self._matcher.get_error()


def triggered_matcher(
    compiler: GrammarCompiler, plan: GrammarPlan, text_after_trigger: str, encode: Callable[[str], list[int]]
) -> TokenMatcher:
    """A matcher that has read `text_after_trigger`, the part of the reply after the trigger text."""
    matcher = compiler.matcher(plan)
    if text_after_trigger:
        matcher.consume(encode(text_after_trigger))
    return matcher
