"""Answer checkers; they run in verifier worker processes (module-level functions, picklable by name).

math           the extracted answer equals the reference as mathematics (Math-Verify: fractions,
               decimals, LaTeX, intervals, sets), e.g. \\frac{1}{2} = 0.5 = 1/2
reasoning_gym  the dataset's own scorer (a 24-game expression is evaluated, a sudoku grid validated)
exact          the same text after case folding and whitespace collapsing
"""

from __future__ import annotations

from typing import Any

from openk2.gym.answers import extract_answer
from openk2.gym.environment import require
from openk2.gym.verifiers import Verdict

MATH_VERIFY = "math-verify==0.7.0"


def check_answer(reply: str, verification: dict[str, Any]) -> Verdict:
    extracted = extract_answer(reply)
    if extracted.answer is None:
        return Verdict(0.0, {"parse_error": extracted.problem, "marker": extracted.marker})
    details: dict[str, Any] = {"extracted": extracted.answer, "marker": extracted.marker}
    check = verification["check"]
    if check == "math":
        return _check_math(extracted.answer, verification["answer"], details)
    if check == "reasoning_gym":
        return _check_reasoning_gym(extracted.answer, verification, details)
    if check == "exact":
        same = _normalised(extracted.answer) == _normalised(verification["answer"])
        return Verdict(1.0 if same else 0.0, details)
    raise ValueError(f"verification.check: unknown checker {check!r}")


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def parse_math(text: str) -> list[Any]:
    """Math-Verify's parse of a bare answer, as LaTeX first, then as a plain expression; [] when neither
    gives a mathematical object (Math-Verify then returns only the raw string)."""
    math_verify = require("math_verify", MATH_VERIFY)
    config = [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]
    for candidate in (f"${text}$", text):
        parsed: list[Any] = math_verify.parse(candidate, extraction_config=config)
        if any(not isinstance(value, str) for value in parsed):
            return parsed
    return []


def _check_math(answer: str, reference: str, details: dict[str, Any]) -> Verdict:
    math_verify = require("math_verify", MATH_VERIFY)
    gold = parse_math(reference)
    if not gold:
        raise ValueError(f"verification.answer: the reference {reference!r} does not parse as mathematics")
    candidate = parse_math(answer)
    if not candidate:
        return Verdict(0.0, details | {"parse_error": f"{answer!r} is not a mathematical expression"})
    return Verdict(1.0 if math_verify.verify(gold, candidate) else 0.0, details)


def _check_reasoning_gym(answer: str, verification: dict[str, Any], details: dict[str, Any]) -> Verdict:
    from openk2.gym.envs.problems import _reasoning_gym

    score = float(
        _reasoning_gym().get_score_answer_fn(verification["dataset"])(answer, verification["entry"])
    )
    # reasoning-gym gives small partial credit for a well-formed wrong answer; a verifiable reward is binary
    return Verdict(1.0 if score >= 1.0 else 0.0, details | {"reasoning_gym_score": score})
