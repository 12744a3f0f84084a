"""Small synthesis recipes for the tests (two categories, a few agents and tasks), and stage 3 played in a
copy of a run directory that holds stages 1 and 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from openk2.llm import LLM
from openk2.recipes import validate_recipe
from openk2.synth import synthesise
from openk2.synth.recipe import SynthRecipe
from tests.synth.scripted_world import bag_of_words


def small_recipe(output: Path, **sections: dict[str, Any]) -> SynthRecipe:
    table: dict[str, Any] = {
        "output": str(output),
        "seed": 0,
        "concurrency": 4,
        "tools": {
            "builtin_servers": [],
            "categories": ["smart_home", "financial_trading"],
            "domains_per_category": 2,
            "evolution": ["deepen", "widen"],
            "evolution_rounds": 1,
        },
        "tasks": {
            "agents": 4,
            "tools_per_agent": [2, 3],
            "tasks_per_agent": 2,
            "levels": [1, 2],
            "real_tool_share": 0.0,
        },
        "run": {"max_turns": 6},
    }
    for section, fields in sections.items():
        if isinstance(fields, dict):
            table.setdefault(section, {}).update(fields)
        else:
            table[section] = fields
    return validate_recipe(SynthRecipe, table, "test recipe", within="synth")


def play(
    tasks_ready: Path, tmp_path: Path, models: dict[str, LLM], progress: bool = False, **sections: Any
) -> tuple[list[dict], list[dict]]:
    """Stage 3 in a copy of `tasks_ready`: (kept trajectories, rejects)."""
    output = tmp_path / "run"
    shutil.copytree(tasks_ready, output)
    synthesise(
        small_recipe(output, **sections), ("run",), progress=progress, models=models, embed=bag_of_words
    )
    kept = [json.loads(line) for line in (output / "trajectories.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (output / "rejects.jsonl").read_text().splitlines()]
    return kept, rejects
