"""Per-row sampling settings, checked against transformers' logits processors and OpenAI's stated formula."""

from collections import Counter

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from openk2.llm import SamplingParams
from openk2.llm.sampling import RowSampler, choose, inverse_cdf_sample, truncated_probs

VOCAB = 50


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(VOCAB, generator=torch.Generator().manual_seed(0)) * 3


def test_repetition_penalty_matches_transformers(logits):
    prompt, generated = [1, 2, 3], Counter({3: 2, 7: 1})
    row = RowSampler(SamplingParams(repetition_penalty=1.3), prompt, generated=generated)
    ours = logits.clone()
    row.adjust(ours)
    seen = torch.tensor([[1, 2, 3, 3, 7]])
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone()[None])[0]
    assert torch.allclose(ours, theirs)


def test_frequency_and_presence_penalties_follow_openais_formula(logits):
    """logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty, counts of the reply only."""
    generated = Counter({4: 3, 9: 1})
    row = RowSampler(
        SamplingParams(frequency_penalty=0.5, presence_penalty=0.25), [4, 5], generated=generated
    )
    ours = logits.clone()
    row.adjust(ours)
    expected = logits.double().numpy().copy()
    for token, count in generated.items():
        expected[token] -= count * 0.5 + 0.25
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=1e-6)


def test_logit_bias_steers_greedy_decoding(logits):
    target = int(logits.argmin())
    row = RowSampler(SamplingParams(temperature=0, logit_bias=((target, 100.0),), return_tokens=True), [])
    [choice] = choose(logits[None], [row], [None])
    assert choice.token == target
    # the reported log-probability is the model's own, before the bias
    assert choice.logprob == pytest.approx(float(logits.log_softmax(-1)[target]), abs=1e-5)


@pytest.mark.parametrize(
    ("params", "warper"),
    [
        (SamplingParams(temperature=1.0, top_k=7), TopKLogitsWarper(7)),
        (SamplingParams(temperature=1.0, top_p=0.8), TopPLogitsWarper(0.8)),
        (SamplingParams(temperature=1.0, min_p=0.1), MinPLogitsWarper(0.1)),
    ],
)
def test_truncation_keeps_the_tokens_transformers_keeps(logits, params, warper):
    ours = truncated_probs(logits.clone(), params) > 0
    theirs = torch.isfinite(warper(torch.zeros(1, 1, dtype=torch.long), logits.clone()[None])[0])
    assert torch.equal(ours, theirs)


def test_a_grammar_mask_is_obeyed_and_the_logprob_stays_the_models(logits):
    allowed = torch.zeros(VOCAB, dtype=torch.bool)
    allowed[[3, 11]] = True
    rows = [
        RowSampler(SamplingParams(temperature=1.0, seed=seed, return_tokens=True), []) for seed in range(20)
    ]
    choices = choose(logits.expand(20, VOCAB), rows, [allowed] * 20)
    assert {choice.token for choice in choices} <= {3, 11}
    for choice in choices:
        assert choice.logprob == pytest.approx(float(logits.log_softmax(-1)[choice.token]), abs=1e-5)


def test_top_logprobs_are_the_most_likely_tokens(logits):
    row = RowSampler(SamplingParams(temperature=0.5, top_logprobs=3), [])
    [choice] = choose(logits[None], [row], [None])
    expected = (logits / 0.5).log_softmax(-1).topk(3)
    assert list(choice.top_logprobs) == expected.indices.tolist()
    assert list(choice.top_logprobs.values()) == pytest.approx(expected.values.tolist(), abs=1e-5)


def test_inverse_cdf_sampling_draws_from_the_distribution():
    """20,000 draws against the probabilities themselves: every count within 5 standard deviations."""
    probs = torch.tensor([[0.5, 0.0, 0.2, 0.25, 0.05]]).expand(20_000, 5)
    draws = inverse_cdf_sample(probs, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=5).double()
    expected = 20_000 * probs[0].double()
    spread = (expected * (1 - probs[0].double())).sqrt()
    assert counts[1] == 0  # a zero-probability token is never drawn
    assert ((counts - expected).abs() <= 5 * spread + 1e-9).all()
