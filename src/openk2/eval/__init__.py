"""Evaluation (K2 report §4): measure any model — an OpenK2 checkpoint, the embedded instruct model, an
OpenAI-compatible endpoint — on the rows of K2's Table 3 that run offline, under K2's settings.

    from openk2.eval import EvalRequest, evaluate, resolve_suites, model_config, EvalProfile
    suites = [(suite, suite.settings(EvalProfile())) for suite in resolve_suites("humaneval,math500")]
    results = evaluate(EvalRequest("teacher", model_config("teacher"), suites, Path("runs/eval/teacher")))

Each item is a gym rollout scored by the gym's verifier (BFCL by its own AST checker), kept as a
`Trajectory`; results carry every score with its 95% interval, the settings and the model's identity.
"""

from openk2.eval.metrics import Interval, Score
from openk2.eval.model import ModelIdentity, model_config
from openk2.eval.profile import EvalProfile, SuiteSettings
from openk2.eval.results import EvalResults, SuiteResult, read_results
from openk2.eval.runner import EvalRequest, EvalStopped, evaluate
from openk2.eval.suites import GROUPS, SUITES, Suite, resolve_suites

__all__ = [
    "GROUPS",
    "SUITES",
    "EvalProfile",
    "EvalRequest",
    "EvalResults",
    "EvalStopped",
    "Interval",
    "ModelIdentity",
    "Score",
    "Suite",
    "SuiteResult",
    "SuiteSettings",
    "evaluate",
    "model_config",
    "read_results",
    "resolve_suites",
]
