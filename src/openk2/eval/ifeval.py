"""IFEval-style accuracy on the gym `instruction` environment: strict and loose, per prompt and per instruction.

Strict: the reply as written satisfies the constraint (the gym's `rules` checker). Loose, as IFEval
defines it: the constraint counts as followed when any of eight variants of the reply satisfies it —
the reply, without its first line, without its last line, without both, and each of these with
markdown emphasis (`*`) removed — so a preamble ("Sure, here it is:") or bold markers do not fail an
otherwise compliant answer. Empty variants do not count. A prompt is followed when all its
constraints are. The checks are the gym's own; this module only builds the variants and counts.
The gym reward also multiplies in its hack-check; IFEval has none, so it is reported beside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openk2.chat import Message
from openk2.eval.metrics import Score, mean_over_units, proportion
from openk2.eval.profile import SuiteSettings
from openk2.eval.scoring import ANNOTATION, TaskOutcome
from openk2.gym import Environment, Task, Trajectory


def loose_variants(reply: str) -> list[str]:
    """IFEval's eight loose variants of a reply, the reply itself first."""
    lines = reply.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    trimmed = [reply, without_first, without_last, without_both]
    return trimmed + [variant.replace("*", "") for variant in trimmed]


def _failed_rules(trajectory_rewards: Sequence[Any]) -> set[str] | None:
    """The constraint ids the `rules` component failed; None when it has no verdict (an error)."""
    for component in trajectory_rewards:
        if component.name == "rules":
            return None if component.error is not None else set(component.details.get("failed") or {})
    return None


async def annotate(env: Environment, task: Task, trajectory: Trajectory) -> dict[str, Any]:
    """Per-constraint strict and loose verdicts of the trajectory's last reply."""
    constraints = [constraint["id"] for constraint in task.verification["constraints"]]
    failed = _failed_rules(trajectory.rewards)
    replies = [message for message in trajectory.messages if message.role == "assistant"]
    if (
        failed is None or not replies or not replies[-1].text.strip()
    ):  # IFEval: an empty reply follows nothing
        return {
            "constraints": constraints,
            "strict": [False] * len(constraints),
            "loose": [False] * len(constraints),
        }
    followed = {constraint for constraint in constraints if constraint not in failed}
    loose = set(followed)
    errors = 0
    history = list(trajectory.messages[: trajectory.messages.index(replies[-1])])
    for variant in loose_variants(replies[-1].text)[1:]:
        if not variant.strip() or loose.issuperset(constraints):
            continue
        reward = await env.score(task, [*history, Message(role="assistant", content=variant)])
        variant_failed = _failed_rules(reward.components)
        if variant_failed is None:
            errors += 1
            continue
        loose |= {constraint for constraint in constraints if constraint not in variant_failed}
    hack = next((c for c in trajectory.rewards if c.name == "hack_check"), None)
    return {
        "constraints": constraints,
        "strict": [constraint in followed for constraint in constraints],
        "loose": [constraint in loose for constraint in constraints],
        "loose_check_errors": errors,
        "hack_check_passed": None if hack is None else hack.passed,
    }


def ifeval_scores(tasks: Sequence[TaskOutcome], settings: SuiteSettings) -> list[Score]:
    """Prompt-level strict (the headline, as K2 reports IFEval) and loose; instruction-level both."""
    verdicts = [sample.provenance[ANNOTATION] for task in tasks for sample in task.samples]
    strict = [verdict["strict"] for verdict in verdicts]
    loose = [verdict["loose"] for verdict in verdicts]
    claims = [
        verdict["hack_check_passed"] for verdict in verdicts if verdict.get("hack_check_passed") is not None
    ]
    return [
        proportion("prompt_strict", [all(flags) for flags in strict]),
        proportion("prompt_loose", [all(flags) for flags in loose]),
        mean_over_units(
            "instruction_strict", [sum(flags) for flags in strict], [len(flags) for flags in strict]
        ),
        mean_over_units(
            "instruction_loose", [sum(flags) for flags in loose], [len(flags) for flags in loose]
        ),
        proportion("no_false_claims", claims),
    ]
