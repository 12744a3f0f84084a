"""openk2.recipes: one reader for recipe TOML and one formatter of pydantic errors for every package."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openk2.recipes import RecipeSection, describe_errors, read_recipe_toml, validate_recipe


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


class Nested(BaseModel):  # not a RecipeSection: a model another package owns, e.g. an LLMConfig
    timeout_s: float = 1.0


class Strict(RecipeSection):
    batch_size: int = 8
    output_dir: Path = Path("runs")
    betas: tuple[float, float] = (0.9, 0.95)
    resume: bool = False
    nested: Nested = Nested()


def test_a_recipe_section_refuses_values_of_the_wrong_type_and_unknown_keys() -> None:
    table = {"batch_size": "16", "resume": 1, "nested": {"timeout_s": "5"}, "batch_sise": 8}
    with pytest.raises(ValueError) as caught:
        validate_recipe(Strict, table, "r.toml", within="train")
    assert str(caught.value) == (
        "r.toml: [train].batch_size: Input should be a valid integer; [train].resume: Input should be a valid "
        "boolean; [train].nested.timeout_s: Input should be a valid number; [train].batch_sise: Extra inputs "
        "are not permitted"
    )
    with pytest.raises(ValidationError, match="batch_size"):  # also when built in Python
        Strict(batch_size="16")


def test_toml_forms_of_paths_pairs_and_whole_numbers_are_accepted() -> None:
    table = {"batch_size": 16, "output_dir": "runs/x", "betas": [0.9, 1], "nested": {"timeout_s": 5}}
    section = validate_recipe(Strict, table, "r.toml", within="train")
    assert section == Strict(
        batch_size=16, output_dir=Path("runs/x"), betas=(0.9, 1.0), nested=Nested(timeout_s=5.0)
    )
    with pytest.raises(ValueError, match=r"^\[train\]\.resume: Input should be a valid boolean$"):
        validate_recipe(Strict, {"resume": "true"}, None, within="train")
