"""Next-token cross-entropy fused with the lm_head projection, a chunk of tokens at a time.

The plain path materialises fp32 logits for every token ([tokens, vocab]: 2.7 GB per 4k-token sequence at
K2's 163,840-token vocabulary), copies a shifted slice of them, and keeps log-softmax for backward. Here each
chunk's logits live only while that chunk is processed: the forward computes the loss and, in the same pass,
the gradients of the hidden states and of the lm_head weight (softmax − one-hot, scaled by 1/tokens), which
backward only rescales by the incoming gradient. The same three GEMMs as the plain path, no recomputation.
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE_INDEX = -100
LOGITS_PER_CHUNK = 2**25  # fp32 logits of one chunk: 128 MiB (4096 tokens at vocab 8192, 204 at K2's)


def next_token_targets(labels: torch.Tensor) -> torch.Tensor:
    """[batch, seq] labels -> [batch * seq] targets: position t predicts labels[t + 1]; the last predicts
    nothing. The shift is done on the (integer) labels, so the hidden states need no sliced copy."""
    targets = labels.new_full(labels.shape, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    return targets.flatten()


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int | None = None
) -> torch.Tensor:
    """mean over targets != -100 of cross_entropy(hidden @ weight.T, targets), without [tokens, vocab] logits.

    hidden [tokens, hidden_size], weight [vocab, hidden_size], targets [tokens]. With no target at all the
    loss is 0 (and so are its gradients), where F.cross_entropy's mean would be NaN.
    """
    if chunk_tokens is None:
        chunk_tokens = max(1, LOGITS_PER_CHUNK // weight.shape[0])
    loss: torch.Tensor = _LinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens)
    return loss


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int
    ) -> torch.Tensor:
        need_hidden_grad, need_weight_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        scale = 1.0 / max(int((targets != IGNORE_INDEX).sum()), 1)
        grad_hidden = torch.zeros_like(hidden) if need_hidden_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_tokens):
            chunk = hidden[start : start + chunk_tokens]
            target = targets[start : start + chunk_tokens]
            predicted = target != IGNORE_INDEX
            if not predicted.any():
                continue
            safe_target = target.clamp_min(0)
            logits = (chunk @ weight.T).float()  # [chunk, vocab], this chunk's only
            # log-sum-exp by hand, in place: the shifted exponentials are reused as the softmax
            shifted = logits.sub_(logits.amax(dim=-1, keepdim=True))  # max 0, so exp cannot overflow
            target_shifted = shifted.gather(1, safe_target[:, None]).squeeze(1)
            exponentials = shifted.exp_()
            sum_exp = exponentials.sum(dim=-1)
            total += ((sum_exp.log() - target_shifted) * predicted).sum()
            if need_hidden_grad or need_weight_grad:
                row_scale = predicted * scale  # 1/targets on predicted rows, 0 on ignored ones
                # (softmax − one-hot) × row_scale, the softmax's division folded into the scaling
                grad_logits = exponentials.mul_((row_scale / sum_exp)[:, None])
                grad_logits[torch.arange(len(target), device=target.device), safe_target] -= row_scale
                grad_logits = grad_logits.to(chunk.dtype)
                if grad_hidden is not None:
                    grad_hidden[start : start + chunk_tokens] = grad_logits @ weight
                if grad_weight is not None:
                    grad_weight += (grad_logits.T @ chunk).float()
        ctx.gradients = (grad_hidden, grad_weight, weight.dtype)
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight, weight_dtype = ctx.gradients
        ctx.gradients = None
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_loss).to(weight_dtype)
        return grad_hidden, grad_weight, None, None
