"""Helpers for the evaluation tests: run suites on a model into a temporary run directory."""

from pathlib import Path
from typing import Any

from openk2.eval import EvalProfile, EvalRequest, EvalResults, evaluate
from openk2.eval.suites import configured_suites
from openk2.llm import LLM, LLMConfig


def run_suites(
    output: Path,
    model: LLM | LLMConfig,
    spec: str,
    overrides: dict[str, Any] | None = None,
    profile: EvalProfile | None = None,
    concurrency: int = 8,
    **options: Any,
) -> EvalResults:
    """`spec` suites with the same `overrides` for each (e.g. {"n": 3}), as `openk2 eval` runs them."""
    profile = profile or EvalProfile()
    suites = configured_suites(spec, profile, overrides)
    request = EvalRequest(
        model_spec=model.model_name
        if isinstance(model, LLM)
        else str(model.checkpoint or model.base_url or "teacher"),
        model=model,
        suites=suites,
        output=output,
        profile=profile,
        concurrency=concurrency,
        **({"progress": False} | options),
    )
    return evaluate(request)
