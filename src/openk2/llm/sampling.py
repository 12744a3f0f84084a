"""Choosing each row's next token from one decoding step's logits, every row with its own settings.

Per row: penalties and logit bias, the grammar's mask, then greedy (temperature 0) or sampling at the
row's temperature after top-k, top-p and min-p truncation. The log-probabilities reported with a
token come from the same logits, at the row's temperature, before anything else touches them: the
model's own distribution, which is what RL scores (see `SampledTokens`). A seeded row draws from its
own generator, so its sample does not depend on which other requests share the batch.
"""

from collections import Counter
from dataclasses import dataclass, field

import torch

from openk2.llm.types import SamplingParams


@dataclass
class RowSampler:
    """One reply's sampling settings and the token history its penalties need."""

    params: SamplingParams
    prompt_ids: list[int]
    generator: torch.Generator | None = None
    generated: Counter[int] = field(default_factory=Counter)

    @classmethod
    def create(cls, params: SamplingParams, prompt_ids: list[int], device: torch.device) -> "RowSampler":
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(params.seed % 2**64)
        return cls(params, prompt_ids, generator)

    def adjust(self, logits: torch.Tensor) -> None:
        """Penalties and biases on one row's logits [vocab], in place."""
        params = self.params
        if params.repetition_penalty != 1.0:
            seen = torch.tensor(sorted({*self.prompt_ids, *self.generated}), device=logits.device)
            values = logits[seen]
            penalty = params.repetition_penalty
            logits[seen] = torch.where(values > 0, values / penalty, values * penalty)
        if (params.frequency_penalty or params.presence_penalty) and self.generated:
            tokens = torch.tensor(list(self.generated), device=logits.device)
            counts = torch.tensor(list(self.generated.values()), device=logits.device, dtype=logits.dtype)
            logits[tokens] -= params.frequency_penalty * counts + params.presence_penalty
        if params.logit_bias:
            vocab = logits.shape[0]
            for token, bias in params.logit_bias:
                if token < vocab:
                    logits[token] += bias


@dataclass(frozen=True)
class Choice:
    token: int
    logprob: float
    top_logprobs: dict[int, float] | None


def truncated_probs(scaled: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Probabilities of one row after top-k, top-p and min-p (the rules of vLLM and HF)."""
    probs = scaled.softmax(dim=-1)
    if params.top_k and params.top_k < probs.shape[-1]:
        kth = probs.topk(params.top_k).values[-1]
        probs = probs.masked_fill(probs < kth, 0.0)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # drop a token when the tokens ranked above it already reach top_p
        outside = (sorted_probs.cumsum(-1) - sorted_probs) >= params.top_p * sorted_probs.sum()
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
    if params.min_p > 0.0:
        probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
    return probs


def choose(logits: torch.Tensor, rows: list[RowSampler], allowed: list[torch.Tensor | None]) -> list[Choice]:
    """One token per row of logits [rows, vocab]; `allowed[i]` is row i's grammar mask or None."""
    logits = logits.float()
    temperatures = torch.tensor([row.params.temperature or 1.0 for row in rows], device=logits.device)
    logprobs = (logits / temperatures[:, None]).log_softmax(dim=-1)
    choices = []
    for index, row in enumerate(rows):
        params = row.params
        adjusted = logits[index].clone()
        row.adjust(adjusted)
        mask = allowed[index]
        if mask is not None:
            adjusted = adjusted.masked_fill(~mask.to(adjusted.device), float("-inf"))
        if params.temperature == 0:
            token = int(adjusted.argmax())
        else:
            probs = truncated_probs(adjusted / params.temperature, params)
            token = int(torch.multinomial(probs, 1, generator=row.generator))
        row.generated[token] += 1
        top = None
        if params.top_logprobs:
            values, ids = logprobs[index].topk(params.top_logprobs)
            top = dict(zip(ids.tolist(), values.tolist(), strict=True))
        choices.append(Choice(token, float(logprobs[index, token]), top))
    return choices
