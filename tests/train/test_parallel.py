"""FSDP2 and expert parallelism (train/parallel.py) against the single-process run, under real torchrun.

Each helper script runs once under `torchrun --standalone --nproc-per-node 2` on gloo with one thread per
process and writes the largest differences it measured; the tests bound them. "Reference" is always the
unparallelized model (or `RoutedExperts`) on the whole global batch in one process.
"""

from __future__ import annotations

from typing import Any

import pytest

from openk2.model.moe import RoutedExperts
from openk2.model.protocols import extension_points
from openk2.train.expert_parallel import ExpertParallelExperts
from openk2.train.parallel import build_mesh
from openk2.train.recipe import ParallelSection
from tests.train.torchrun import torchrun

TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-6  # measured ≤ 1e-7; the largest gradients are ~0.1
RUNS = ["data_parallel", "expert_parallel", "expert_and_data_parallel"]


@pytest.fixture(scope="module")
def data_parallel(two_processes: dict[str, Any]) -> dict[str, Any]:
    return two_processes["1"]


@pytest.fixture(scope="module")
def expert_parallel(two_processes: dict[str, Any]) -> dict[str, Any]:
    return two_processes["2"]


@pytest.fixture(scope="module")
def expert_and_data_parallel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """4 processes, [parallel] dp=4, ep=2: a 2 × 2 mesh; FSDP2 also shards each expert shard over 2 ranks."""
    result = tmp_path_factory.mktemp("ep_dp") / "result.json"
    return torchrun("distributed_training_steps.py", "2", result=result, processes=4)["2"]


@pytest.fixture(scope="module")
def all_to_all(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = tmp_path_factory.mktemp("a2a") / "result.json"
    return torchrun("distributed_all_to_all.py", result=result)


@pytest.mark.parametrize("run", RUNS)
def test_losses_and_logits_of_first_steps_equal_single_process_within_1e_5(run, request):
    steps = request.getfixturevalue(run)["steps"]
    assert len(steps) == 3
    for step in steps:
        assert step["loss"] <= TOLERANCE, steps
        assert step["logits"] <= TOLERANCE, steps


@pytest.mark.parametrize("run", RUNS)
def test_gradients_equal_single_process_gradients_of_the_global_mean_loss(run, request):
    # a wrong divide factor (FSDP's own, or dividing twice) puts expert gradients off by a factor of 2
    for step in request.getfixturevalue(run)["steps"]:
        gradients = step["gradients"]
        assert gradients["reference_scale"] > 1e-2
        assert gradients["experts"] <= GRADIENT_TOLERANCE, step
        assert gradients["rest"] <= GRADIENT_TOLERANCE, step


@pytest.mark.parametrize("run", RUNS)
def test_clip_grad_norm_over_experts_and_the_rest_is_the_single_process_norm(run, request):
    for step in request.getfixturevalue(run)["steps"]:
        assert step["reference_grad_norm"] > 1.0  # so that clipping at 1.0 changed the update
        assert step["grad_norm"] <= TOLERANCE * step["reference_grad_norm"], step


@pytest.mark.parametrize("run", RUNS)
def test_expert_counts_summed_over_ranks_are_the_global_batch_counts(run, request):
    # tokens_per_expert is per rank, over all E experts: the loop's SUM all-reduce gives the global load
    for step in request.getfixturevalue(run)["steps"]:
        assert step["expert_counts"] == 0, step


@pytest.mark.parametrize("run", RUNS)
def test_full_state_dict_after_training_is_the_single_process_one(run, request):
    result = request.getfixturevalue(run)
    assert result["state_dict_keys_match"]
    assert result["state_dict"] <= TOLERANCE


def test_expert_parallel_runs_really_split_the_experts(
    expert_parallel, expert_and_data_parallel, data_parallel
):
    assert expert_parallel["expert_weight_type"].endswith("ExpertParallelExperts")
    assert expert_and_data_parallel["expert_weight_type"].endswith("ExpertParallelExperts")
    assert data_parallel["expert_weight_type"].endswith("RoutedExperts")
    assert "ExpertParallel" not in data_parallel["expert_weight_type"]


@pytest.mark.parametrize(
    ("case", "ranks_with_tokens"),
    [
        ("all slots to rank 0's experts", [1.0, 0.0]),
        ("all slots to rank 1's experts, rank 0 mostly", [0.0, 1.0]),
        ("a rank without tokens", [1.0, 1.0]),
        ("random routing", [1.0, 1.0]),
    ],
)
def test_all_to_all_dispatch_matches_routed_experts_on_uneven_and_empty_splits(
    all_to_all, case, ranks_with_tokens
):
    result = all_to_all["cases"][case]
    assert result["ranks_whose_experts_got_tokens"] == ranks_with_tokens
    assert result["reference_expert_grad_scale"] > 1.0
    for name in ("output", "token_counts", "token_grads", "routing_weight_grads", "expert_grads"):
        assert result[name] <= 1e-6, (name, result)


def test_expert_parallelism_refuses_experts_whose_stages_were_already_wrapped(all_to_all):
    assert "apply expert parallelism first" in all_to_all["wrapped_stage_refusal"]


def test_build_mesh_names_the_numbers_when_the_layout_is_not_the_world_size(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(
        ValueError, match=r"\[parallel\] pp × dp = 1 × 2 = 2 differs from the number of processes, 1"
    ):
        build_mesh(ParallelSection(dp=2))


def test_parallel_section_names_the_field_when_ep_does_not_divide_dp():
    with pytest.raises(ValueError, match=r"ep: must divide dp=1, got 2"):
        ParallelSection(dp=1, ep=2)


def test_expert_parallel_experts_offer_the_memory_policy_the_routed_experts_stages():
    assert extension_points(ExpertParallelExperts) == extension_points(RoutedExperts)
