"""PTX and the closed critic loop in a short run of the warm policy: every update adds the weighted PTX loss
(read as `openk2 sft` reads its sources); on the verifiable task the policy, as critic, judges pairs whose
verified outcomes differ (its agreement with the verifier is recorded), each pair is written as a preference
record with the verified-correct reply chosen (what `openk2 sft`'s `preference` kind reads), and from the
second iteration those records train the critic's verdicts in the same optimizer steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from openk2.rl.metrics import IterationRecord
from openk2.rl.trainer import rl
from openk2.sft.preference import PreferenceRecord
from openk2.train.metrics import read_metrics
from tests.rl.rl_setup import flawed_demonstrations, rl_sections, write_rl_recipe


@pytest.mark.slow  # three RL iterations with critic calls, after the shared SFT warm-up
def test_ptx_loss_and_verified_critic_pairs(warm_policy: Path, tmp_path: Path) -> None:
    ptx_set = flawed_demonstrations(tmp_path / "ptx.jsonl", train=100, test=10)
    sections = rl_sections(
        tmp_path, warm_policy, name="loop",
        run=dict(steps=3),
        rl=dict(
            eval={"every": 0},
            critic={"verified_pairs_per_group": 2, "train_weight": 0.1, "max_tokens": 8},
            ptx={"weight": 0.2, "sources": [{"kind": "tasks", "path": str(ptx_set)}], "seq_len": 128},
        ),
    )  # fmt: skip
    rl(write_rl_recipe(tmp_path / "rl.toml", sections), progress=False)
    records = read_metrics(tmp_path / "loop" / "metrics.jsonl", IterationRecord)
    trained = [r for r in records if r.updates > 0]
    assert trained and all(r.ptx_loss is not None and r.ptx_loss > 0 for r in trained)
    assert all(r.critic_pairs > 0 and 0 <= (r.critic_agreement or 0) <= 1 for r in records)
    assert any(r.critic_loss is not None and r.critic_loss > 0 for r in trained if r.step > 1)

    lines = (tmp_path / "loop" / "critic_data.jsonl").read_text().splitlines()
    preferences = [PreferenceRecord.model_validate_json(line) for line in lines]
    assert preferences and all(p.id and p.id.startswith("i") for p in preferences)
    for preference in preferences:  # chosen by the verifier: the exact reversal wins
        assert isinstance(preference.prompt, list)
        question = preference.prompt[-1].text  # "Reverse 639"
        assert preference.chosen.strip() == question.split()[-1][::-1] != preference.rejected.strip()
