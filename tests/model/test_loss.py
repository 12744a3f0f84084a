"""The fused, chunked lm_head + cross-entropy against the plain path computed in float64."""

import pytest
import torch
import torch.nn.functional as F

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.loss import IGNORE_INDEX, linear_cross_entropy, next_token_targets
from tests.numerics import FP32_EPS, assert_close_in_norm

BATCH, SEQ, HIDDEN, VOCAB = 3, 23, 32, 300


def plain_loss_float64(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What K2ForCausalLM computed before: full logits, a shifted slice, F.cross_entropy; in float64."""
    logits = hidden.double() @ weight.double().T
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX)


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(BATCH, SEQ, HIDDEN, generator=generator) * 2
    weight = torch.randn(VOCAB, HIDDEN, generator=generator) * 0.5
    labels = torch.randint(0, VOCAB, (BATCH, SEQ), generator=generator)
    labels[1, 5:12] = IGNORE_INDEX  # SFT-style masked spans
    labels[2, :] = IGNORE_INDEX  # a row with nothing to predict
    return hidden, weight, labels


@pytest.mark.parametrize("chunk_tokens", [1, 7, 32, 10_000])
def test_loss_and_gradients_equal_the_float64_plain_path(chunk_tokens: int) -> None:
    hidden, weight, labels = _inputs(seed=chunk_tokens)
    ours_hidden, ours_weight = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = linear_cross_entropy(
        ours_hidden.flatten(0, 1), ours_weight, next_token_targets(labels), chunk_tokens
    )
    (loss * 3.0).backward()  # a non-unit incoming gradient must scale both gradients

    ref_hidden, ref_weight = hidden.double().requires_grad_(), weight.double().requires_grad_()
    expected = plain_loss_float64(ref_hidden, ref_weight, labels)
    (expected * 3.0).backward()
    assert abs(loss.item() - expected.item()) < 10 * FP32_EPS * expected.item()
    assert_close_in_norm(ours_hidden.grad.double(), ref_hidden.grad, 30 * FP32_EPS, "hidden grad")
    assert_close_in_norm(ours_weight.grad.double(), ref_weight.grad, 30 * FP32_EPS, "weight grad")
    assert ours_hidden.grad[2].abs().max() == 0 and ours_hidden.grad[:, -1].abs().max() == 0


def test_nothing_to_predict_gives_zero_loss_and_zero_gradients() -> None:
    hidden = torch.randn(4, HIDDEN, requires_grad=True)
    weight = torch.randn(VOCAB, HIDDEN, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.full((4,), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0 and hidden.grad.abs().max() == 0 and weight.grad.abs().max() == 0


def test_the_model_loss_is_the_plain_loss_of_its_own_logits() -> None:
    torch.manual_seed(0)
    model = K2ForCausalLM(K2Config.preset("tiny"))
    tokens = torch.randint(0, model.config.vocab_size, (2, 16))
    logits = model(tokens).logits.double()
    expected = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    output = model(tokens, labels=tokens)
    assert output.logits is None
    assert abs(output.loss.item() - expected.item()) < 30 * FP32_EPS * expected.item()
