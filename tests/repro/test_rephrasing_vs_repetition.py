"""repro/rephrasing_vs_repetition.py (K2 report Table 1): the synthetic facts, the probe, the reduced script."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from facts import PROBE_KINDS, PROBES, TEMPLATES, invent_people, probe_prompts, template_paraphrases
from rephrasing_vs_repetition import answer_log_probs, keeps_facts, write_corpus

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.config import PRESETS
from tests.repro.conftest import run_quick


def test_every_template_rewrite_keeps_the_facts_and_none_uses_a_probe_phrasing() -> None:
    people = invent_people(50)
    assert len({p.name for p in people}) == 50
    for person in people:
        rewrites = template_paraphrases(person, len(TEMPLATES))
        assert len(set(rewrites)) == len(TEMPLATES)
        for rewrite in rewrites:
            assert keeps_facts(person, rewrite), rewrite
            # the probes' own prompts: a question never seen in training, and the raw text's cloze
            for _, prompt, _, _ in probe_prompts(person):
                assert prompt.split("\n")[0] not in rewrite
            assert f"{person.name} was born in" not in rewrite
    assert {name for names in PROBE_KINDS.values() for name in names} == set(PROBES)


def test_keeps_facts_catches_a_changed_town() -> None:
    person = invent_people(1)[0]
    assert keeps_facts(person, person.biography())
    assert not keeps_facts(person, person.biography().replace(person.town, "Atlantis"))


def test_both_corpora_are_ten_passes_in_the_same_orders_differing_only_in_text(tmp_path: Path) -> None:
    people = invent_people(30)
    raw, rewrites = (
        [
            json.loads(line)
            for line in write_corpus(tmp_path / f"{r}.jsonl", people, r).read_text().splitlines()
        ]
        for r in (False, True)
    )
    assert len(raw) == len(rewrites) == 10 * len(people)
    assert [r["source_id"] for r in raw] == [r["source_id"] for r in rewrites]
    first_pass = [r["source_id"] for r in raw[: len(people)]]
    assert sorted(first_pass) == sorted(p.id for p in people)
    assert first_pass != [r["source_id"] for r in raw[len(people) : 2 * len(people)]]  # reshuffled per pass
    by_person = {p.id: p for p in people}
    assert all(r["text"] == by_person[r["source_id"]].biography() for r in raw)
    texts: dict[str, set[str]] = {}
    for record in rewrites:
        texts.setdefault(record["source_id"], set()).add(record["text"])
    assert all(len(forms) == 10 for forms in texts.values())  # ten different forms of each biography


def test_batched_answer_scores_equal_one_sequence_at_a_time() -> None:
    torch.manual_seed(0)
    model = K2ForCausalLM(K2Config(**PRESETS["tiny"] | dict(vocab_size=1024))).eval()
    prompt, answers = [5, 17, 300, 42], [[7], [9, 11, 13], [600, 2]]
    batched = answer_log_probs(model, prompt, answers)
    with torch.no_grad():
        for answer, score in zip(answers, batched, strict=True):
            log_probs = model(input_ids=torch.tensor([prompt + answer])).logits.double().log_softmax(-1)[0]
            alone = sum(log_probs[len(prompt) - 1 + i, token].item() for i, token in enumerate(answer))
            assert score == pytest.approx(alone, rel=1e-4, abs=1e-4)


@pytest.mark.long
def test_rephraser_fidelity_and_both_training_arms(tmp_path: Path, quick_data_root: Path) -> None:
    results = run_quick("rephrasing_vs_repetition", tmp_path, quick_data_root, "--seeds", "1")
    rephraser = results["rephraser"]
    assert rephraser["summary"]["items"] == 1 and rephraser["attempts"] >= 1
    assert 0 <= rephraser["attempts_keeping_facts"] <= rephraser["attempts"]
    assert results["settings"]["probed_people"] > 0
    raw, rewrites = results["arms"].values()
    # ten rewrites once and the raw text ten times are about the same number of tokens
    assert 0.7 < rewrites["training_tokens"] / raw["training_tokens"] < 1.4
    for arm in (raw, rewrites):
        for accuracy in arm["accuracy"]:
            assert set(accuracy) == set(PROBES) and all(0 <= a <= 1 for a in accuracy.values())
        assert set(arm["by_kind"]) == set(PROBE_KINDS)
        assert all(math.isfinite(loss) for loss in arm["final_train_loss"])
