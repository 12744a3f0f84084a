"""Recipes: TOML files read once, and pydantic errors turned into `[section].field: message` text.

Every stage's recipe (pre-training, rephrasing, synthesis, SFT, RL, evaluation) is a TOML document whose
tables are validated by pydantic before any work starts; reading it and naming a bad field are shared here.
The module needs nothing but pydantic, so every package (the model's config.json, chat messages, task
files) names bad fields with the same `describe_errors`.

Every recipe table is a `RecipeSection`, and every recipe file is validated whole by `validate_recipe`, so a
stage added later inherits the same rules: unknown keys are errors, and types are strict (`batch_size =
"16"` is refused, not read as 16).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class RecipeSection(BaseModel):
    """A table of a recipe: a misspelt key is an error (never a silent default), values are frozen, and a
    value of the wrong type is refused rather than converted (`"16"` is not a number, `1` not a bool)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Validated = TypeVar("Validated", bound=BaseModel)


def validate_recipe(
    model: type[Validated], table: Mapping[str, Any], origin: str | None, within: str | None = None
) -> Validated:
    """`table` (a TOML document, or one of its tables with `within` its name) validated as `model`, strictly.

    It is validated as JSON: TOML has no path or pair type, so a path arrives as a string and a pair as an
    array, which strict JSON validation accepts, while `"16"` for a number still fails. Strictness applies
    to nested models too (e.g. an `LLMConfig` inside a section). Problems: `<origin>: [section].field: msg`
    (the file, or what else the table came from; None: no origin).
    """
    try:
        return model.model_validate_json(json.dumps(table, default=str), strict=True)
    except ValidationError as error:
        problems = describe_errors(error, within=within, data=table)
        raise ValueError(problems if origin is None else f"{origin}: {problems}") from None


def load_recipe_file(path: Path, model: type[Validated]) -> Validated:
    """A recipe file read and validated whole as `model`: every section, not only those a command uses."""
    return validate_recipe(model, read_recipe_toml(path), str(path))


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
