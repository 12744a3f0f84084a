"""The trainer's log-probs are the sampler's: a reply sampled at temperature T by the in-process engine,
re-forwarded through the same weights with `token_logprobs(logits, targets, T)` (log softmax(logits / T)),
gets the log-probs the engine recorded while sampling; at T = 1 the re-forward disagrees, so the check
would catch a trainer that ignores the sampling temperature."""

from __future__ import annotations

from pathlib import Path

import torch

from openk2.chat import Message
from openk2.llm import SamplingParams
from openk2.llm.k2_engine import K2Engine
from openk2.rl.losses import token_logprobs


def test_engine_logprobs_equal_a_re_forward_at_the_sampling_temperature(pretrained_checkpoint: Path) -> None:
    engine = K2Engine.from_checkpoint(pretrained_checkpoint, max_batch_size=4)
    try:
        temperature = 0.7
        sampling = SamplingParams(temperature=temperature, max_tokens=12, seed=3, return_tokens=True)
        completion = engine.chat([Message(role="user", content="Reverse 123")], None, sampling)
        tokens = completion.tokens
        assert tokens is not None and tokens.logprobs is not None and tokens.temperature == temperature
        ids = torch.tensor([tokens.prompt_token_ids + tokens.token_ids])
        with torch.no_grad():
            logits = engine.model(input_ids=ids[:, :-1]).logits.double()
        reply = slice(len(tokens.prompt_token_ids) - 1, None)  # positions predicting the reply's tokens
        targets = ids[:, 1:]
        recorded = torch.tensor(tokens.logprobs, dtype=torch.float64)
        at_t = token_logprobs(logits, targets, temperature)[0, reply]
        at_one = token_logprobs(logits, targets, 1.0)[0, reply]
        torch.testing.assert_close(at_t, recorded, rtol=0, atol=1e-4)
        assert (at_one - recorded).abs().max() > 1e-2
        # and by hand: log softmax of the logits divided by T, at the sampled ids
        by_hand = torch.log_softmax(logits[0, reply] / temperature, dim=-1).gather(
            -1, targets[0, reply, None]
        )
        torch.testing.assert_close(at_t, by_hand[:, 0], rtol=0, atol=1e-12)
    finally:
        engine.close()
