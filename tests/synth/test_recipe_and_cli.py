"""The `[synth]` recipe and the `openk2 synth` verb: bad fields are named, `--help` stays light."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from openk2.cli import main
from openk2.synth.recipe import load_synth_recipe

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "synth.toml"
    path.write_text(text)
    return path


def test_the_shipped_recipes_load():
    for name in ("synth-tiny.toml", "synth-embedded.toml"):
        recipe = load_synth_recipe(ROOT / "recipes" / name)
        assert recipe.models.judge.backend == "teacher" and abs(sum(recipe.run.outcomes.values()) - 1) < 1e-9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[synth.tools]\ncategories = ['smart_home', 'cooking']",
            "[synth].tools.categories: ['cooking']: not categories of K2 Fig. 9",
        ),
        (
            "[synth.run]\noutcomes = {success = 0.5, edge_case = 0.4}",
            "[synth].run.outcomes: rates must be >= 0 and sum to 1",
        ),
        (
            "[synth.tasks]\ntools_per_agent = [3, 2]",
            "[synth].tasks.tools_per_agent: expected 1 <= fewest <= most, got [3, 2]",
        ),
        (
            "[synth.models.judge]\nbackend = 'endpoint'",
            "[synth].models.judge: base_url: required when backend is 'endpoint'",
        ),
        ("[synth]\nconcurency = 4", "[synth].concurency: Extra inputs are not permitted"),
        ("[synth]\nconcurrency = '4'", "[synth].concurrency: Input should be a valid integer"),
        ("[synth]\n[other]\nx = 1", "[other]: Extra inputs are not permitted"),
    ],
)
def test_a_bad_field_is_named(tmp_path, text, message):
    with pytest.raises(ValueError) as error:
        load_synth_recipe(write(tmp_path, text))
    assert message in str(error.value) and str(tmp_path) in str(error.value)


def test_a_bad_command_line_value_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"^command line: \[synth\].concurrency: Input should be greater"):
        load_synth_recipe(write(tmp_path, "[synth]\nseed = 1\n"), {"concurrency": 0, "output": None})


def test_a_recipe_without_a_synth_section_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"synth.toml: no \[synth\] section"):
        load_synth_recipe(write(tmp_path, "[run]\nname = 'x'\n"))


def test_the_verb_reports_a_bad_recipe_as_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["synth", "--recipe", str(write(tmp_path, "[synth.run]\nmax_turns = 0\n"))])
    assert exit_code.value.code == 2
    assert "[synth].run.max_turns" in capsys.readouterr().err


def test_help_imports_no_torch():
    started = time.monotonic()
    probe = "import sys; from openk2.cli import main\ntry:\n main(['synth', '--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "--recipe" in result.stdout and result.stdout.strip().endswith("False")
    assert time.monotonic() - started < 60  # generous: it is the import graph that matters, not the time
