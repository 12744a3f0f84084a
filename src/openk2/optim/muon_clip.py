"""MuonClip (K2 report §2.1, Algorithm 1): a Muon step, then QK-Clip on the heads that step's forward saw.

MuonClip changes nothing but what Algorithm 1 changes; the router's balancing bias, gradient clipping and
the learning-rate schedule belong to the training loop. A model whose attention does not expose its max
logits (a transformers model) gets Muon alone: QK-Clip applies where the attention supports it.
"""

from collections.abc import Iterable
from typing import Any, Self

import torch
from torch import nn

from openk2.optim.muon import Muon
from openk2.optim.param_groups import muon_param_groups
from openk2.optim.qk_clip import QKClip, QKClipStats, has_max_logit_attention


class MuonClip(Muon):
    """Muon + AdamW (by parameter role) + per-head QK-Clip, applied in `step()` after the update."""

    def __init__(
        self, param_groups: Iterable[dict[str, Any]], qk_clip: QKClip | None, **muon_options: Any
    ) -> None:
        super().__init__(param_groups, **muon_options)
        self.qk_clip = qk_clip
        self.last_qk_clip_stats = QKClipStats({}, heads_clipped=0, heads_total=0)  # before the first step

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        lr: float = 2e-4,
        weight_decay: float = 0.1,
        qk_clip_tau: float = 100.0,
        process_group: torch.distributed.ProcessGroup | None = None,
        **muon_options: Any,
    ) -> Self:
        """Muon for hidden matrices, AdamW for the rest, and max-logit recording switched on in `model`
        (no QK-Clip when no attention module of `model` records its max logits)."""
        qk_clip = None
        if has_max_logit_attention(model):
            qk_clip = QKClip(model, tau=qk_clip_tau, process_group=process_group)
        return cls(
            muon_param_groups(model),
            qk_clip,
            lr=lr,
            weight_decay=weight_decay,
            **muon_options,
        )

    def _update_parameters(self) -> None:
        super()._update_parameters()
        # Algorithm 1 line 8: QK-Clip after the update, with S_max from this step's forward passes
        if self.qk_clip is not None:
            self.last_qk_clip_stats = self.qk_clip.apply()
