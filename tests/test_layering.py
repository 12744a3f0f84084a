"""The import graph of src/openk2 keeps its layers (docs/architecture.md): a lower package never imports a
higher one, imports inside functions included.

    model, optim, tokenizer, io, recipes, progress  →  data, chat  →  llm  →  rephrase, gym  →  synth, train
    →  sft, eval, serve  →  rl  →  run  →  cli  (→  __main__)
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[1] / "src" / "openk2"
LAYERS = [
    {"model", "optim", "tokenizer", "io", "recipes", "progress"},
    {"data", "chat"},
    {"llm"},
    {"rephrase", "gym"},
    {"synth", "train"},
    {"sft", "eval", "serve"},
    {"rl"},  # RL reads SFT's data for its PTX loss and writes the critic's preference records SFT reads
    {"run"},  # the whole pipeline: validates every stage's recipe, runs each stage's command
    {"cli"},
    {"__main__"},
]
LAYER = {package: index for index, layer in enumerate(LAYERS) for package in layer}
# dependency-free utilities: the standard library and pydantic only; the lowest packages may use them
UTILITIES = {"io", "recipes"}
# a module named in a string, e.g. the CLI's "openk2.serve.cli:add_serve_arguments" for importlib
MODULE_STRING = re.compile(r"^openk2\.([a-z_0-9]+)[a-z_0-9.]*(:[a-z_0-9]+)?$")


def package_of(path: Path) -> str:
    return path.relative_to(SOURCE).parts[0].removesuffix(".py")


def imported_modules(path: Path) -> list[str]:
    """Every module an `import`, a `from ... import` (at any depth, in functions too) or a module string names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            assert node.module is not None
            if node.module == "openk2":  # from openk2 import io
                modules += [f"openk2.{alias.name}" for alias in node.names]
            else:
                modules.append(node.module)
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value)
        ):
            modules.append(node.value.split(":")[0])
    return modules


def openk2_imports() -> dict[str, set[str]]:
    """package -> the other openk2 packages it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(SOURCE.rglob("*.py")):
        if path.parent == SOURCE and path.name == "__init__.py":
            continue
        package = package_of(path)
        for module in imported_modules(path):
            if module.startswith("openk2."):
                target = module.split(".")[1]
                if target != package:
                    graph[package].add(target)
    return graph


GRAPH = openk2_imports()


def test_every_package_has_a_layer() -> None:
    packages = {package_of(path) for path in SOURCE.rglob("*.py")} - {"__init__"}
    assert packages - set(LAYER) == set()


@pytest.mark.parametrize("package", sorted(LAYER))
def test_a_package_imports_only_lower_layers(package: str) -> None:
    higher_or_level = {
        target for target in GRAPH[package] if LAYER[target] >= LAYER[package] and target not in UTILITIES
    }
    assert higher_or_level == set(), f"{package} (layer {LAYER[package]}) imports {higher_or_level}"


def test_model_and_optim_import_only_dependency_free_utilities() -> None:
    assert GRAPH["model"] <= UTILITIES, GRAPH["model"]
    assert GRAPH["optim"] <= UTILITIES, GRAPH["optim"]


def test_the_tokenizer_and_the_utilities_stand_alone() -> None:
    assert GRAPH["tokenizer"] <= UTILITIES, GRAPH["tokenizer"]
    assert GRAPH["io"] == set() and GRAPH["recipes"] == set()


@pytest.mark.parametrize("utility", sorted(UTILITIES))
def test_the_utilities_need_nothing_but_the_standard_library_and_pydantic(utility: str) -> None:
    third_party = {
        module.split(".")[0]
        for module in imported_modules(SOURCE / f"{utility}.py")
        if module.split(".")[0] not in sys.stdlib_module_names and module != "__future__"
    }
    assert third_party <= {"pydantic"}


def test_the_data_and_chat_stages_do_not_reach_up_or_sideways() -> None:
    assert "data" not in GRAPH["chat"]
    assert GRAPH["data"] & {"llm", "chat", "rephrase"} == set()


def test_only_the_cli_and_the_stages_that_train_on_the_shared_loop_import_train() -> None:
    # run reads pre-training recipes (to validate them up front) and their checkpoints' names, never the loop
    importers = {package for package, targets in GRAPH.items() if "train" in targets}
    assert importers <= {"cli", "sft", "rl", "run"}


def test_the_scan_sees_imports_inside_functions_and_module_strings(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text(
        "def f():\n    from openk2.train import loop\n    import openk2.rl\n"
        "VERB = 'openk2.serve.cli:add_serve_arguments'\n"
    )
    assert set(imported_modules(module)) == {"openk2.train", "openk2.rl", "openk2.serve.cli"}
