from __future__ import annotations

from pathlib import Path

import pytest

from openk2.llm import LLMConfig
from openk2.rephrase.config import RephraseConfig, load_rephrase_config
from openk2.rephrase.prompts import BUILTIN_LIBRARY

RECIPE = """\
[rephrase]
mode = "math-notes"
variants = 2
temperature = 0.3
concurrency = 8

[rephrase.checks]
names = false

[rephrase.rewriter]
backend = "endpoint"
base_url = "http://127.0.0.1:8000/v1"
"""


def write_recipe(tmp_path: Path, text: str) -> Path:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(text, encoding="utf-8")
    return recipe


def test_defaults_without_a_recipe() -> None:
    config = load_rephrase_config(None, {})
    assert config == RephraseConfig()
    assert (config.mode, config.language, config.variants) == ("knowledge", "English", 1)
    assert (config.chunk_tokens, config.context_tokens, config.max_attempts) == (256, 512, 2)
    assert (config.temperature, config.judge_threshold, config.concurrency) == (0.6, 3, 4)
    assert config.prompt_library == BUILTIN_LIBRARY
    assert config.rewriter == LLMConfig(backend="teacher")
    assert config.judge is None
    assert config.checks == {}


def test_recipe_table_is_read(tmp_path: Path) -> None:
    config = load_rephrase_config(write_recipe(tmp_path, RECIPE), {})
    assert (config.mode, config.variants, config.temperature, config.concurrency) == ("math-notes", 2, 0.3, 8)
    assert config.checks == {"names": False}
    assert config.rewriter == LLMConfig(backend="endpoint", base_url="http://127.0.0.1:8000/v1")
    assert config.language == "English"


def test_overrides_go_on_top_and_none_is_ignored(tmp_path: Path) -> None:
    overrides = {"variants": 3, "language": "German", "mode": None, "temperature": None}
    config = load_rephrase_config(write_recipe(tmp_path, RECIPE), overrides)
    assert (config.variants, config.language) == (3, "German")
    assert (config.mode, config.temperature) == ("math-notes", 0.3)


def test_overrides_without_a_recipe(tmp_path: Path) -> None:
    config = load_rephrase_config(
        None, {"mode": "translate", "prompt_library": str(tmp_path), "tokenizer": None}
    )
    assert config.mode == "translate"
    assert config.prompt_library == tmp_path
    assert config.tokenizer == "teacher"


def test_a_recipe_without_a_rephrase_table_is_an_error_naming_the_file(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, '[data]\ncorpus = "x"\n')
    with pytest.raises(ValueError, match=r"recipe\.toml: no \[rephrase\] section"):
        load_rephrase_config(recipe, {})


def test_a_bad_flag_is_blamed_on_the_command_line_and_a_bad_recipe_value_on_the_file(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "[rephrase]\nvariants = 2\n")
    with pytest.raises(ValueError, match=r"^command line: \[rephrase\]\.variants: "):
        load_rephrase_config(recipe, {"variants": 0})
    bad = write_recipe(tmp_path, "[rephrase]\nvariants = 0\n")
    with pytest.raises(ValueError, match=r"recipe\.toml: \[rephrase\]\.variants: "):
        load_rephrase_config(bad, {"variants": 2})


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("variants = 0", "[rephrase].variants: "),
        ('mode = "poetry"', "[rephrase].mode: "),
        ("colour = 1", "[rephrase].colour: Extra inputs are not permitted"),
        ("judge_threshold = 6", "[rephrase].judge_threshold: "),
        ("chunk_tokens = 8", "[rephrase].chunk_tokens: "),
        ("temperature = 2.5", "[rephrase].temperature: "),
        ('language = ""', "[rephrase].language: "),
    ],
)
def test_bad_value_is_an_error_naming_file_and_field(tmp_path: Path, line: str, named: str) -> None:
    recipe = write_recipe(tmp_path, f"[rephrase]\n{line}\n")
    with pytest.raises(ValueError) as error:
        load_rephrase_config(recipe, {})
    message = str(error.value)
    assert message.startswith(f"{recipe}: ")
    assert named in message


def test_bad_override_is_an_error_naming_the_command_line() -> None:
    with pytest.raises(ValueError) as error:
        load_rephrase_config(None, {"variants": 0})
    assert str(error.value).startswith("command line: [rephrase].variants: ")


def test_every_bad_field_is_named(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, '[rephrase]\nvariants = 0\nmode = "poetry"\n')
    with pytest.raises(ValueError) as error:
        load_rephrase_config(recipe, {})
    assert "[rephrase].variants: " in str(error.value)
    assert "[rephrase].mode: " in str(error.value)


def test_endpoint_without_base_url_is_an_error_naming_base_url(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, '[rephrase.rewriter]\nbackend = "endpoint"\n')
    with pytest.raises(ValueError) as error:
        load_rephrase_config(recipe, {})
    message = str(error.value)
    assert message.startswith(f"{recipe}: [rephrase].rewriter: ")
    assert "base_url: required when backend is 'endpoint'" in message


def test_judge_endpoint_without_base_url_is_an_error_naming_the_judge(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, '[rephrase.judge]\nbackend = "endpoint"\n')
    with pytest.raises(ValueError, match=r"\[rephrase\]\.judge: .*base_url"):
        load_rephrase_config(recipe, {})


def test_unreadable_recipe_is_an_error_naming_it(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "[rephrase\n")
    with pytest.raises(ValueError, match="cannot read recipe") as error:
        load_rephrase_config(recipe, {})
    assert str(recipe) in str(error.value)


def test_output_settings_leave_out_concurrency_and_how_the_models_are_reached() -> None:
    settings = RephraseConfig(concurrency=16).output_settings()
    assert set(settings) == set(RephraseConfig.model_fields) - {
        "concurrency",
        "rewriter",
        "judge",
        "prompt_library",
    }
    assert settings == RephraseConfig(concurrency=1).output_settings()
    slower = RephraseConfig(rewriter=LLMConfig(timeout_s=600, max_retries=5)).output_settings()
    assert slower == settings  # a resume with a longer timeout is the same run
    assert settings != RephraseConfig(variants=2).output_settings()
    assert settings != RephraseConfig(checks={"names": False}).output_settings()
