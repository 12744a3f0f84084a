"""`logic`: the puzzles K2 names (K2 report §3.2.1, Logical Reasoning): 24-game, sudoku, cryptarithms,
ciphers and Morse decoding, zebra puzzles, multi-hop and aggregating questions over tables; plus number
sorting and digit reversal. Each is scored by its own checker; `difficulty` sets the size."""

from __future__ import annotations

from openk2.gym.envs.answer_env import AnswerEnv
from openk2.gym.envs.problems import (
    DIGIT_REVERSAL,
    MORSE_DECODING,
    SHORT_REVERSAL,
    TABULAR,
    reasoning_gym_source,
)

PUZZLE24 = reasoning_gym_source(
    "puzzle24", "puzzle24", {level: {"min_value": 1, "max_value": 5 + 2 * level} for level in range(1, 6)}
)
SUDOKU = reasoning_gym_source(
    "sudoku",
    "mini_sudoku",
    {
        1: {"min_empty": 3, "max_empty": 5},
        2: {"min_empty": 6, "max_empty": 8},
        3: {"min_empty": 8, "max_empty": 12},
        4: {"min_empty": 20, "max_empty": 30},
        5: {"min_empty": 35, "max_empty": 50},
    },
    dataset_for={4: "sudoku", 5: "sudoku"},  # 4x4 up to difficulty 3, then 9x9
)
CRYPTARITHM = reasoning_gym_source(
    "cryptarithm",
    "cryptarithm",
    {level: {"min_words": 2, "max_words": 2 + level // 2} for level in range(1, 6)},
)
CIPHER = reasoning_gym_source(
    "cipher",
    "caesar_cipher",
    {level: {"min_words": level, "max_words": 2 * level, "max_rotation": 5 * level} for level in range(1, 6)},
)
ZEBRA = reasoning_gym_source(
    "zebra",
    "zebra_puzzles",
    {level: {"num_people": 1 + level, "num_characteristics": 1 + level} for level in range(1, 6)},
)
SORTING = reasoning_gym_source(
    "sorting",
    "number_sorting",
    {
        level: {"min_numbers": 2 + level, "max_numbers": 3 * level + 2, "max_decimals": min(level - 1, 2)}
        for level in range(1, 6)
    },
)


class LogicEnv(AnswerEnv):
    name = "logic"
    kind = "logic"
    summary = "24-game, sudoku, cryptarithm, ciphers, Morse, zebra, table questions, sorting, digit reversal"
    problem_sources = (
        PUZZLE24,
        SUDOKU,
        CRYPTARITHM,
        CIPHER,
        MORSE_DECODING,
        ZEBRA,
        TABULAR,
        SORTING,
        DIGIT_REVERSAL,
        SHORT_REVERSAL,
    )
    sources = tuple(source.source for source in problem_sources)
    preload = ("openk2.gym.envs.problems", "reasoning_gym")
    instruction = "Give your final answer on the last line, after 'Answer:'."
