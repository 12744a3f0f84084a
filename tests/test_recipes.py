"""openk2.recipes: one reader for recipe TOML and one formatter of pydantic errors for every package."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openk2.recipes import describe_errors, read_recipe_toml


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern="^text$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(gt=0)
    content: str | list[Part] = ""
    parts: list[Part] = []


def errors_of(table: dict) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Section.model_validate(table)
    return caught.value


def test_sections_fields_and_list_indexes_are_named() -> None:
    error = errors_of({"lr": 0, "extra": 1})
    assert describe_errors(error, within="optim") == (
        "[optim].lr: Input should be greater than 0; [optim].extra: Extra inputs are not permitted"
    )
    nested = errors_of({"lr": 1, "parts": [{"type": "text"}, {"type": "image"}]})
    assert describe_errors(nested, within="") == "parts[1].type: String should match pattern '^text$'"


def test_union_member_labels_are_dropped_given_the_input() -> None:
    table = {"lr": 1, "content": [{"type": "image"}]}
    error = errors_of(table)
    # without the input, pydantic's labels for the union's members stand in the path
    assert "content.str: " in describe_errors(error, within="")
    assert describe_errors(error, within="", data=table) == (
        "content: Input should be a valid string; content[0].type: String should match pattern '^text$'"
    )
    assert describe_errors(error, within="", data=table, deepest_only=True) == (
        "content[0].type: String should match pattern '^text$'"
    )


def test_a_missing_field_is_named_although_the_input_lacks_it() -> None:
    assert describe_errors(errors_of({}), within="train", data={}) == "[train].lr: Field required"


def test_a_whole_model_problem_is_its_message_without_the_value_error_prefix() -> None:
    class Checked(BaseModel):
        low: int
        high: int

        def model_post_init(self, context: object) -> None:
            if self.low > self.high:
                raise ValueError("low: expected at most high")

    with pytest.raises(ValueError) as caught:
        Checked(low=2, high=1)
    assert isinstance(caught.value, ValidationError)
    assert describe_errors(caught.value, within="") == "low: expected at most high"


def test_an_unreadable_recipe_names_the_file(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text("[data\n")
    with pytest.raises(ValueError, match=r"bad\.toml: cannot read recipe"):
        read_recipe_toml(recipe)
    with pytest.raises(ValueError, match=r"absent\.toml: cannot read recipe"):
        read_recipe_toml(tmp_path / "absent.toml")
