"""Recipes: TOML files read once, and pydantic errors turned into `[section].field: message` text.

Every stage's recipe (pre-training, rephrasing, synthesis, SFT, RL, evaluation) is a TOML document whose
tables are validated by pydantic before any work starts; reading it and naming a bad field are shared here.
The module needs nothing but pydantic, so every package (the model's config.json, chat messages, task
files) names bad fields with the same `describe_errors`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def read_recipe_toml(recipe: Path) -> dict:
    """A recipe file's TOML document; an unreadable file or bad TOML is an error naming the file."""
    try:
        with recipe.open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{recipe}: cannot read recipe ({error})") from error


def describe_errors(
    error: ValidationError, within: str | None = None, data: Any = None, deepest_only: bool = False
) -> str:
    """One `where: message` per problem, `; `-joined; list indexes read `[2]`.

    `within=None`: the first location part is the recipe section (`[optim].lr`); `within="data"`: every
    location lies in that section (`[data].vocab_size`); `within=""`: a plain path (`tool_calls[0].id`), and a
    problem of the whole model is its message alone. `data`, the validated input: the labels pydantic puts
    into locations for the members of a union (`str`, `list[TextPart]`) index nothing in it and are left out.
    `deepest_only`: only the problem that lies deepest, e.g. the union member that came closest to matching.
    """
    problems = error.errors()
    if deepest_only:
        problems = [max(problems, key=lambda problem: len(problem["loc"]))]
    described = []
    for problem in problems:
        message = problem["msg"].removeprefix("Value error, ")
        parts = error_path(problem["loc"], data) if data is not None else list(problem["loc"])
        if within:
            parts = [within, *parts]
        if not parts:
            described.append(message)
        elif within == "":
            described.append(f"{_dotted(parts)}: {message}")
        else:
            described.append(f"[{parts[0]}]{_dotted(parts[1:], leading_dot=True)}: {message}")
    return "; ".join(described)


def error_path(location: tuple[int | str, ...], data: Any) -> list[int | str]:
    """The parts of a pydantic error location that index `data` (or name a missing field of it)."""
    path: list[int | str] = []
    for position, part in enumerate(location):
        indexes_data = (isinstance(data, Mapping) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and part < len(data)
        )
        names_a_missing_field = isinstance(data, Mapping) and position == len(location) - 1
        if not (indexes_data or names_a_missing_field):
            continue
        path.append(part)
        data = data[part] if indexes_data else None
    return path


def _dotted(parts: list[int | str], leading_dot: bool = False) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)
    return text if leading_dot else text.removeprefix(".")
