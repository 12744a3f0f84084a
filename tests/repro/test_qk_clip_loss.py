"""repro/qk_clip_loss.py (K2 report App. D) in its reduced form, two seeds per arm."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.repro.conftest import run_quick


@pytest.mark.long  # the script run end to end in its quick form
def test_clipped_and_unclipped_arms_with_their_seed_spread(tmp_path: Path, quick_data_root: Path) -> None:
    results = run_quick("qk_clip_loss", tmp_path, quick_data_root, "--seeds", "2")
    no_clip, clip = results["arms"]["no clip"], results["arms"]["tau 0.15"]
    # the comparison is only worth something if the clipped arm did clip, and the other never can
    assert no_clip["max_fraction_heads_clipped"] == 0
    assert clip["max_fraction_heads_clipped"] > 0
    for arm in (no_clip, clip):
        assert len(arm["final_val_loss"]) == 2
        assert all(0 < loss < math.log(768) + 1 for loss in arm["final_val_loss"])
        assert arm["std"] > 0  # two initialisations differ
        assert arm["mean"] == pytest.approx(sum(arm["final_val_loss"]) / 2)
    assert results["difference_of_means"] == pytest.approx(clip["mean"] - no_clip["mean"])
    assert results["within_seed_noise"] == (
        abs(results["difference_of_means"]) <= 2 * results["largest_seed_std"]
    )
