"""`openk2 --help` and every verb's `--help` answer without torch, transformers or the stages' pipelines."""

from __future__ import annotations

import json
import subprocess
import sys

from openk2.cli import build_parser
from openk2.rephrase.prompts import MODES

HEAVY = ("torch", "transformers", "openk2.rephrase.pipeline", "openk2.train", "openk2.data.loader")
PROBE = """
import json, sys
from openk2.cli import main
for argv in json.loads(sys.argv[1]):
    try:
        main([*argv, "--help"])
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def verbs() -> list[str]:
    [subparsers] = [action for action in build_parser()._actions if action.dest == "verb"]
    return sorted(subparsers.choices)


def test_help_of_the_command_and_of_every_verb_imports_nothing_heavy() -> None:
    argvs = [[], *[[verb] for verb in verbs()]]
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs)], capture_output=True, text=True, check=True
    )
    imported = set(json.loads(probe.stderr.strip().splitlines()[-1]))
    assert "openk2.rephrase.prompts" in imported and "openk2.serve.cli" in imported  # every verb was built
    assert [module for module in HEAVY if module in imported] == []
    assert "usage: openk2 chat" in probe.stdout and "usage: openk2 pretrain" in probe.stdout


def test_rephrase_mode_choices_are_the_prompt_librarys_modes() -> None:
    [subparsers] = [action for action in build_parser()._actions if action.dest == "verb"]
    rephrase = subparsers.choices["rephrase"]
    [mode] = [action for action in rephrase._actions if action.dest == "mode"]
    assert tuple(mode.choices) == MODES == ("knowledge", "math-notes", "translate")


def test_a_verb_gets_its_package_arguments_only_when_asked_for() -> None:
    [subparsers] = [action for action in build_parser(verb="pretrain")._actions if action.dest == "verb"]
    assert not [action for action in subparsers.choices["serve"]._actions if action.dest == "port"]
    assert build_parser(verb="serve").parse_args(["serve", "--teacher", "--port", "9"]).port == 9
