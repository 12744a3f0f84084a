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
    logprob: float | None  # None when the row reports no log-probabilities
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


def inverse_cdf_sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One sample per row of (unnormalised) probabilities [rows, vocab], by inverting the cumulative sum
    with one uniform number per row: exact, and far cheaper on the CPU than torch.multinomial or a
    random number per token. `right=True` never lands on a zero-probability token."""
    cdf = probs.double().cumsum(dim=-1)
    uniform = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device, generator=generator)
    picks = torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True)
    return picks.squeeze(1).clamp_(max=probs.shape[1] - 1)


def choose(logits: torch.Tensor, rows: list[RowSampler], allowed: list[torch.Tensor | None]) -> list[Choice]:
    """One token per row of logits [rows, vocab]; `allowed[i]` is row i's grammar mask or None.

    Vectorised over rows where the settings allow it; only rows with penalties, truncation or a seed
    are handled one by one.
    """
    logits = logits.float()
    device = logits.device
    params = [row.params for row in rows]
    temperatures = torch.tensor([p.temperature or 1.0 for p in params], device=device)
    # the model's log-probabilities, only for the rows that report them (a softmax per row is not free)
    scored = [index for index, p in enumerate(params) if p.return_tokens or p.top_logprobs]
    logprobs = None
    if scored:
        scored_index = torch.tensor(scored, device=device)
        logprobs = (logits[scored_index] / temperatures[scored_index, None]).log_softmax(dim=-1)
    adjusted = logits.clone()
    for index, row in enumerate(rows):
        if (
            row.params.repetition_penalty != 1.0
            or row.params.frequency_penalty
            or row.params.presence_penalty
        ):
            row.adjust(adjusted[index])
    biased = [
        (index, token, bias)
        for index, p in enumerate(params)
        for token, bias in p.logit_bias
        if token < logits.shape[1]
    ]
    if biased:
        where, biased_tokens, biases = zip(*biased, strict=True)
        adjusted.index_put_(
            (torch.tensor(where, device=device), torch.tensor(biased_tokens, device=device)),
            torch.tensor(biases, device=device),
            accumulate=True,
        )
    masked = [index for index, mask in enumerate(allowed) if mask is not None]
    if masked:
        masks = torch.stack([allowed[index] for index in masked]).to(device)  # type: ignore[misc]
        rows_index = torch.tensor(masked, device=device)
        adjusted[rows_index] = adjusted[rows_index].masked_fill(~masks, float("-inf"))
    sampled = [index for index, p in enumerate(params) if p.temperature > 0]
    chosen = torch.zeros(len(rows), dtype=torch.long, device=device)
    if len(sampled) < len(rows):
        greedy = torch.tensor([index for index, p in enumerate(params) if p.temperature == 0], device=device)
        chosen[greedy] = adjusted[greedy].argmax(dim=-1)
    if sampled:
        rows_index = torch.tensor(sampled, device=device)
        every_row = len(sampled) == len(rows)  # the common case: no copy of the logits
        probs = (
            adjusted / temperatures[:, None]
            if every_row
            else adjusted[rows_index] / temperatures[rows_index, None]
        ).softmax(dim=-1)
        together = []
        for position, index in enumerate(sampled):
            p = params[index]
            if p.top_k or p.top_p < 1.0 or p.min_p > 0.0:
                probs[position] = truncated_probs(adjusted[index] / p.temperature, p)
            generator = rows[index].generator
            if generator is None:
                together.append(position)
            else:
                chosen[index] = inverse_cdf_sample(probs[position : position + 1], generator)[0]
        if together:
            chosen[rows_index[together]] = inverse_cdf_sample(probs[together])
    tokens = chosen.tolist()
    reported: dict[int, tuple[float, dict[int, float] | None]] = {}
    if logprobs is not None:
        picked = logprobs.gather(1, chosen[scored_index][:, None]).squeeze(1).tolist()
        for position, index in enumerate(scored):
            top = None
            if params[index].top_logprobs:
                values, ids = logprobs[position].topk(params[index].top_logprobs)
                top = dict(zip(ids.tolist(), values.tolist(), strict=True))
            reported[index] = (picked[position], top)
    choices = []
    for index, (row, token) in enumerate(zip(rows, tokens, strict=True)):
        row.generated[token] += 1
        logprob, top = reported.get(index, (None, None))
        choices.append(Choice(token, logprob, top))
    return choices
