"""`results.json`: what was measured, on which model, with which settings, and every item it came from."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openk2.eval.metrics import Score
from openk2.eval.model import ModelIdentity
from openk2.eval.profile import EvalProfile, SuiteSettings
from openk2.eval.suites import Area
from openk2.gym import Trajectory
from openk2.recipes import describe_errors

RESULTS_FILE = "results.json"
HTML_FILE = "results.html"
ITEMS_FILE = "items.jsonl"  # the resumable log of finished items (trajectories)
REPLIES_FILE = "replies.jsonl"  # the reply cache
MANIFEST_FILE = "run.json"  # model and settings a resumed run must match


class SuiteResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: str
    benchmark: str
    area: Area
    metric: str  # the headline as Table 3 labels it
    source: str
    scores: list[Score]  # the headline first
    settings: SuiteSettings
    tasks: int
    items: int  # tasks x samples
    scored: int
    errors: int  # items whose verifier, environment or request failed: not scored, not counted as 0
    error_examples: list[str] = Field(default_factory=list)
    unsupported: str | None = None  # why the model could not be measured on this suite at all
    notes: list[str] = Field(default_factory=list)
    trajectories: list[Trajectory] = Field(default_factory=list)

    @property
    def headline(self) -> Score | None:
        return self.scores[0] if self.scores else None


class EvalResults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelIdentity
    profile: EvalProfile
    helper: ModelIdentity | None = None  # the user simulator and judge of tau2 suites
    concurrency: int
    created: str  # ISO time the results were written
    elapsed_s: float  # this session's time (a resumed run counts only its own)
    notes: list[str] = Field(default_factory=list)
    suites: list[SuiteResult]

    @property
    def label(self) -> str:
        return self.model.name or self.model.spec


def read_results(path: Path) -> EvalResults:
    """A results.json, or the run directory holding one; errors name the file and the field."""
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {RESULTS_FILE} (run `openk2 eval` with --output there first)")
    try:
        return EvalResults.model_validate(json.loads(file.read_text()))
    except json.JSONDecodeError as error:
        raise ValueError(f"{file}: not JSON ({error})") from None
    except ValidationError as error:
        raise ValueError(f"{file}: {describe_errors(error, within='')}") from None
