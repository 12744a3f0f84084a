"""Recipes: TOML files read once, and pydantic errors turned into `[section].field: message` text.

Every stage's recipe (pre-training, rephrasing, synthesis, SFT, RL, evaluation) is a TOML document whose
tables are validated by pydantic before any work starts; these two functions are the shared part.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError


def read_recipe_toml(recipe: Path) -> dict:
    """A recipe file's TOML document; an unreadable file or bad TOML is an error naming the file."""
    try:
        with recipe.open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{recipe}: cannot read recipe ({error})") from error


def describe_errors(error: ValidationError, within: str | None = None) -> str:
    """One `where: message` per problem, `; `-joined. `within=None`: the first location part is the recipe
    section (`[optim].lr`); `within="data"`: every location lies in that section (`[data].vocab_size`);
    `within=""`: a plain dotted path (`mode`)."""
    problems = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        parts = [str(part) for part in problem["loc"]]
        if within:
            parts = [within, *parts]
        if not parts:
            problems.append(message)
            continue
        if within == "":
            where = ".".join(parts)
        else:
            where = f"[{parts[0]}]" + "".join(f".{part}" for part in parts[1:])
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
