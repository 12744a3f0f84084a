"""Pipeline parallelism (train/pipeline.py) against the unsplit model, under real torchrun on gloo."""

from __future__ import annotations

from typing import Any

import pytest

from openk2.train.pipeline import split_layers
from tests.train.test_parallel import torchrun

TOLERANCE = 1e-5  # the FSDP2 tests' bound on losses and gradients (test_parallel.py)


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """pp=2 with 1F1B (layers 0-1 | 2-3) and Interleaved1F1B (rank 0: layers 0, 2; rank 1: 1, 3), 3 MuonClip
    steps of the tiny model each, in one torchrun launch of 2 processes."""
    result = tmp_path_factory.mktemp("pipeline") / "result.json"
    return torchrun("distributed_pipeline_steps.py", result=result)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["1F1B", "Interleaved1F1B"])
def test_pipeline_steps_equal_the_unsplit_model(two_stages: dict[str, Any], schedule: str) -> None:
    run = two_stages[schedule]
    assert run["layers_on_rank_0"] == ([0, 1] if schedule == "1F1B" else [0, 2])
    for step in run["steps"]:
        assert step["loss"] < TOLERANCE and step["gradients"] < TOLERANCE, step
        assert step["grad_norm"] < TOLERANCE and step["max_logit"] < TOLERANCE, step
        assert step["expert_counts"] == 0, step
    assert run["weights"] < TOLERANCE
    # QK-Clip fired (τ below the max logit) and clipped the same heads on the stages as in one process
    assert run["heads_clipped"] == run["reference_heads_clipped"] > 0


def test_layers_are_split_evenly_and_more_stages_than_layers_are_refused() -> None:
    assert split_layers(61, 16)[0] == range(0, 4) and split_layers(61, 16)[-1] == range(58, 61)
    assert [len(r) for r in split_layers(5, 2)] == [3, 2]
    with pytest.raises(ValueError, match=r"pp × virtual_stages = 5 pipeline stages exceed .* = 4"):
        split_layers(4, 5)
