"""QK-Clip: rescale a head's query and key weights after the step when its max attention logit exceeds τ.

K2 report §2.1 and Algorithm 1 lines 8–16: for every head h with S_max^h > τ, γ_h = τ / S_max^h and the
head's unshared query/key weights are scaled so that its logits shrink by exactly γ_h (MLA: q_nope and
k_nope × √γ_h, q_rope × γ_h, the shared rotary key untouched; MHA: W_q and W_k × √γ_h). Heads at or below
τ are not touched. The forward/backward of the step is unchanged: S_max only guides the weight rescale.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

import torch
from torch import Tensor, nn

from openk2.optim.distributed import all_reduce_max_, whole_parameters


@runtime_checkable
class MaxLogitAttention(Protocol):
    """What an attention module offers QK-Clip; the module owns the mapping from heads to weight rows."""

    num_heads: int
    training: bool  # nn.Module's: evaluation forwards are not part of a training step
    record_max_logit: bool  # when True, forward stores max_logit_per_head
    max_logit_per_head: Tensor | None  # [num_heads] fp32, detached: max scaled logit of the last forward

    def qk_clip_(self, gamma_per_head: Tensor) -> None:
        """Scale head h's logits by gamma_per_head[h] through its weights; heads with gamma 1 untouched."""


@dataclass(frozen=True)
class QKClipStats:
    """What QK-Clip saw and did in one optimizer step."""

    max_logit_per_layer: dict[str, float]  # attention module name -> max over its heads of S_max^h
    heads_clipped: int
    heads_total: int

    @property
    def fraction_clipped(self) -> float:
        return self.heads_clipped / self.heads_total if self.heads_total else 0.0

    @property
    def max_logit(self) -> float:
        return max(self.max_logit_per_layer.values(), default=0.0)


def has_max_logit_attention(model: nn.Module) -> bool:
    """Whether some attention module of `model` offers QK-Clip its max logits (OpenK2's MLA does)."""
    return any(isinstance(module, MaxLogitAttention) for module in model.modules())


class QKClip:
    """Records S_max^h over every training forward of a step and clips heads above τ in `apply()`."""

    def __init__(
        self,
        model: nn.Module,
        tau: float = 100.0,
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        if tau <= 0:
            raise ValueError(f"qk_clip_tau: expected a positive threshold, got {tau}")
        self.tau = tau
        self.process_group = process_group
        self.attention_modules: dict[str, MaxLogitAttention] = {
            name: module for name, module in model.named_modules() if isinstance(module, MaxLogitAttention)
        }
        if not self.attention_modules:
            raise ValueError(
                "QKClip: no module in the model has num_heads, record_max_logit, max_logit_per_head, qk_clip_"
            )
        # S_max^h is a max over the whole (global) batch: fold every micro-batch's forward into it
        self._step_max_logit: dict[str, Tensor] = {}
        for name, module in self.attention_modules.items():
            module.record_max_logit = True
            cast(nn.Module, module).register_forward_hook(self._make_recorder(name))

    def _make_recorder(self, name: str) -> Callable[[nn.Module, object, object], None]:
        attention = self.attention_modules[name]

        def record(module: nn.Module, inputs: object, output: object) -> None:
            # evaluation forwards do not belong to the training step's batch
            if not attention.training or attention.max_logit_per_head is None:
                return
            seen = self._step_max_logit.get(name)
            latest = attention.max_logit_per_head.detach().float()
            self._step_max_logit[name] = latest if seen is None else torch.maximum(seen, latest)

        return record

    @torch.no_grad()
    def apply(self) -> QKClipStats:
        """Clip every head whose S_max (max over ranks and micro-batches of this step) exceeds τ."""
        names = [name for name in self.attention_modules if name in self._step_max_logit]
        if not names:
            return QKClipStats({}, 0, 0)
        # one collective for all layers, so every rank clips identically
        max_logits = all_reduce_max_(torch.cat([self._step_max_logit[n] for n in names]), self.process_group)
        self._step_max_logit.clear()
        heads_per_layer = [self.attention_modules[n].num_heads for n in names]
        max_logit_per_layer: dict[str, float] = {}
        heads_clipped = 0
        for name, max_logit_per_head in zip(names, max_logits.split(heads_per_layer), strict=True):
            max_logit_per_layer[name] = max_logit_per_head.max().item()
            over_tau = max_logit_per_head > self.tau
            if over_tau.any():
                # γ_h = τ / S_max^h above τ, exactly 1 elsewhere (also where S_max^h ≤ 0)
                gamma_per_head = torch.where(over_tau, self.tau / max_logit_per_head, 1.0)
                module = self.attention_modules[name]
                with whole_parameters(
                    cast(nn.Module, module)
                ):  # sharded weights: every rank rescales whole rows alike
                    module.qk_clip_(gamma_per_head)
                heads_clipped += int(over_tau.sum())
        return QKClipStats(max_logit_per_layer, heads_clipped, sum(heads_per_layer))
