"""`math`: competition problems (MMATH: MATH500 subset, AIME 2024/2025, CNMO) and procedural arithmetic
and algebra (reasoning-gym), answers compared for mathematical equivalence (K2 report §3.2.1, Math)."""

from __future__ import annotations

from openk2.gym.envs.answer_env import AnswerEnv
from openk2.gym.envs.problems import mmath_source, reasoning_gym_source

PLAIN = {"allow_parentheses": False, "allow_negation": False}  # the easy levels
ARITHMETIC = reasoning_gym_source(
    "arithmetic",
    "basic_arithmetic",
    {
        1: {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ("+",), **PLAIN},
        2: {
            "min_terms": 2,
            "max_terms": 2,
            "min_digits": 1,
            "max_digits": 2,
            "operators": ("+", "-"),
            **PLAIN,
        },
        3: {
            "min_terms": 2,
            "max_terms": 3,
            "min_digits": 1,
            "max_digits": 2,
            "operators": ("+", "-", "*"),
            **PLAIN,
        },
        4: {"min_terms": 3, "max_terms": 4, "min_digits": 1, "max_digits": 3},
        5: {"min_terms": 4, "max_terms": 6, "min_digits": 2, "max_digits": 4},
    },
    check="math",
)
ALGEBRA = reasoning_gym_source(
    "algebra",
    "simple_equations",
    {
        1: {
            "min_terms": 2,
            "max_terms": 2,
            "min_value": 1,
            "max_value": 10,
            "operators": ("+", "-"),
            "operators_weights": [0.5, 0.5],
        },
        2: {"min_terms": 2, "max_terms": 2, "min_value": 1, "max_value": 20},
        3: {"min_terms": 2, "max_terms": 3, "min_value": 1, "max_value": 50},
        4: {"min_terms": 3, "max_terms": 4, "min_value": 1, "max_value": 100},
        5: {"min_terms": 4, "max_terms": 5, "min_value": 1, "max_value": 100},
    },
    check="math",
)


class MathEnv(AnswerEnv):
    name = "math"
    kind = "math"
    summary = "MMATH competition problems and procedural arithmetic/algebra; mathematical equivalence"
    problem_sources = (ARITHMETIC, ALGEBRA, mmath_source())
    sources = tuple(source.source for source in problem_sources)
    preload = ("math_verify", "sympy")
    instruction = "Put your final answer within \\boxed{}."
