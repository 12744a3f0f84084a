"""repro/qk_clip_logits.py (K2 report Fig. 2) in its reduced form: τ = 0.3, so that clipping starts at once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.repro.conftest import run_quick

# at logits this small one Muon step moves them by a large fraction, so the logit measured on the next batch
# may pass τ by more than at the full size (≤ 1.25 τ there); a clip that did nothing would leave it far above
QUICK_OVERSHOOT = 2.0


@pytest.mark.long  # the script run end to end in its quick form
def test_vanilla_muon_logits_pass_tau_and_muonclip_holds_them_near_it(
    tmp_path: Path, quick_data_root: Path
) -> None:
    results = run_quick("qk_clip_logits", tmp_path, quick_data_root)
    tau, steps = results["settings"]["tau"], results["settings"]["steps"]
    muon, clip = results["muon"], results["muonclip"]
    assert len(muon["max_logit"]) == len(clip["max_logit"]) == len(clip["fraction_heads_clipped"]) == steps

    assert muon["max_logit_final"] > 2 * tau
    first = clip["first_clip_step"]
    assert first is not None and clip["steps_with_clipping"] >= 1
    # the same seed and batches: until QK-Clip first acts the two runs are the same computation
    assert clip["max_logit"][:first] == muon["max_logit"][:first]
    assert clip["max_logit"][first - 1] > tau
    assert clip["max_logit_after_first_clip"] <= QUICK_OVERSHOOT * tau
    assert clip["max_logit_final"] < muon["max_logit_final"] / 1.5
    assert 0 < clip["max_fraction_heads_clipped"] <= 1
    assert all(math.isfinite(loss) for loss in muon["loss"] + clip["loss"])
