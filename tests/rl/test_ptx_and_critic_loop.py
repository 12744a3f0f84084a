"""PTX and the closed critic loop. In a short run of the warm policy every update adds the weighted PTX loss
(read as `openk2 sft` reads its sources), and on the verifiable task every pair of samples whose verified
outcomes differ is written as a preference record with the verified-correct reply chosen (what `openk2 sft`'s
`preference` kind reads). The tiny policy's 512 positions cannot hold a judging prompt (the rubric alone
fills them), so its critic calls fail and count as no verdict; the critic's scoring of verified pairs and
the critic SFT batch are checked with a scripted critic and the real tokenizer instead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from openk2.llm import ChatRequest
from openk2.rl.metrics import IterationRecord
from openk2.rl.ptx import critic_batch
from openk2.rl.recipe import RLSection
from openk2.rl.rewards import score_group
from openk2.rl.rollouts import GroupRecord
from openk2.rl.trainer import rl
from openk2.sft.preference import PreferenceRecord
from openk2.tokenizer import load_tokenizer
from openk2.train.metrics import read_metrics
from openk2.train.world import World
from tests.gym.scripted import ScriptedLLM
from tests.rl.rl_setup import flawed_demonstrations, rl_sections, write_rl_recipe
from tests.rl.test_critic import GREEDY, _pair, longer_wins
from tests.rl.test_rewards import TASK, trajectory


@pytest.mark.slow  # three RL iterations with critic calls, after the shared SFT warm-up
def test_ptx_loss_and_verified_critic_pairs(warm_policy: Path, tmp_path: Path) -> None:
    ptx_set = flawed_demonstrations(tmp_path / "ptx.jsonl", train=100, test=10)
    sections = rl_sections(
        tmp_path, warm_policy, name="loop",
        run=dict(steps=3),
        rl=dict(
            eval={"every": 0},
            critic={"verified_pairs_per_group": 2, "max_tokens": 8},
            ptx={"weight": 0.2, "sources": [{"kind": "tasks", "path": str(ptx_set)}], "seq_len": 128},
        ),
    )  # fmt: skip
    rl(write_rl_recipe(tmp_path / "rl.toml", sections), progress=False)
    records = read_metrics(tmp_path / "loop" / "metrics.jsonl", IterationRecord)
    trained = [r for r in records if r.updates > 0]
    assert trained and all(r.ptx_loss is not None and r.ptx_loss > 0 for r in trained)
    assert all(r.critic_agreement is None for r in records)  # every judging prompt overflowed

    lines = (tmp_path / "loop" / "critic_data.jsonl").read_text().splitlines()
    preferences = [PreferenceRecord.model_validate_json(line) for line in lines]
    assert preferences and all(p.id and p.id.startswith("i") for p in preferences)
    for preference in preferences:  # chosen by the verifier: the exact reversal wins
        assert isinstance(preference.prompt, list)
        question = preference.prompt[-1].text  # "Reverse 639"
        assert preference.chosen.strip() == question.split()[-1][::-1] != preference.rejected.strip()


def _verified_group() -> GroupRecord:
    return GroupRecord(
        iteration=1, rank=0, group_id="g", source=0, task=TASK,
        trajectories=[trajectory(0, "321", 1.0), trajectory(1, "3210 is the reversal of 123", 0.0)],
    )  # fmt: skip


def correct_wins(request: ChatRequest) -> str:
    """Prefers the verified-correct reply, '321', in either position."""
    return f"Verdict: {'A' if _pair(request)[0] == '321' else 'B'}"


@pytest.mark.parametrize(("script", "agreement"), [(correct_wins, 1.0), (longer_wins, 0.0)])
def test_the_critic_is_scored_against_the_verifier(
    script: Callable[[ChatRequest], str], agreement: float
) -> None:
    section = RLSection.model_validate(
        dict(tasks=[dict(env="logic")], critic=dict(verified_pairs_per_group=2))
    )
    scores = asyncio.run(score_group(_verified_group(), section, ScriptedLLM(script), GREEDY, []))
    [pair] = scores.pairs
    assert (pair.better_reply, pair.worse_reply) == ("321", "3210 is the reversal of 123")
    assert pair.judgement.score == agreement
    assert any(criterion.name == "correct" for criterion in pair.rubric)


def test_verified_pairs_become_critic_training_rows_in_both_orders(pretrained_checkpoint: Path) -> None:
    tokenizer = load_tokenizer(pretrained_checkpoint / "tokenizer.json")
    record = PreferenceRecord(id="i1/g/0>1", prompt=list(TASK.messages), chosen="321", rejected="3210")
    batch = critic_batch([record], tokenizer, seq_len=1024, world=World(rank=0, world_size=1))
    assert batch is not None and batch.input_ids.shape[0] == 2  # one row per order
    verdicts = [tokenizer.decode([t for t in row.tolist() if t != -100]) for row in batch.labels]
    assert sorted(v.split("Verdict: ")[1][0] for v in verdicts) == ["A", "B"]  # chosen as A, then as B
    assert critic_batch([record], tokenizer, seq_len=128, world=World(rank=0, world_size=1)) is None
