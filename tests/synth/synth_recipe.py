"""Small synthesis recipes for the tests (two categories, a few agents and tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openk2.recipes import validate_recipe
from openk2.synth.recipe import SynthRecipe


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
