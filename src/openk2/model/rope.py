"""Decoupled rotary position embedding with YaRN, exactly as the released DeepSeek-V3 / Kimi-K2 code.

K2 pre-trains at 4k and extends to 128k with YaRN (K2 report §2.5): frequencies of the low rotary pairs are
kept, the high ones interpolated by 1/factor, with a linear ramp between; attention logits are rescaled by
mscale². Rotary dims are stored as interleaved pairs (x0, x1), (x2, x3), ... in the checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from openk2.model.config import K2Config, YarnRopeScaling


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def yarn_correction_dim(num_rotations: float, dim: int, base: float, max_position: int) -> float:
    """The rotary pair index whose wavelength fits `num_rotations` times into `max_position`."""
    return (dim * math.log(max_position / (num_rotations * 2 * math.pi))) / (2 * math.log(base))


def rope_inverse_frequencies(
    dim: int, base: float, scaling: YarnRopeScaling | None
) -> tuple[torch.Tensor, float]:
    """Returns (inverse frequency per rotary pair [dim/2], multiplier for cos/sin), always on the CPU in fp32."""
    freq_extrapolated = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim))
    if scaling is None:
        return freq_extrapolated, 1.0
    freq_interpolated = freq_extrapolated / scaling.factor
    original = scaling.original_max_position_embeddings
    low = max(math.floor(yarn_correction_dim(scaling.beta_fast, dim, base, original)), 0)
    high: float = min(math.ceil(yarn_correction_dim(scaling.beta_slow, dim, base, original)), dim - 1)
    if low == high:
        high += 0.001  # the released code's guard against a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    keep_original = 1.0 - ramp  # 1 for low pairs (high frequency), 0 for pairs past the ramp
    inv_freq = freq_interpolated * (1 - keep_original) + freq_extrapolated * keep_original
    cos_sin_scale = yarn_get_mscale(scaling.factor, scaling.mscale) / yarn_get_mscale(
        scaling.factor, scaling.mscale_all_dim
    )
    return inv_freq, cos_sin_scale


def softmax_scale(config: K2Config) -> float:
    """1/sqrt(d_qk), times mscale(factor, mscale_all_dim)² under YaRN (as the released code: 0.1309 for K2)."""
    scale = config.qk_head_dim**-0.5
    if config.rope_scaling is not None and config.rope_scaling.mscale_all_dim:
        mscale = yarn_get_mscale(config.rope_scaling.factor, config.rope_scaling.mscale_all_dim)
        scale = scale * mscale * mscale
    return scale


class RotaryEmbedding(nn.Module):
    """Produces cos/sin per position for the qk_rope_head_dim rotary part of q and the shared key."""

    def __init__(self, config: K2Config) -> None:
        super().__init__()
        # a plain attribute, not a buffer: it stays fp32 under .to(bf16) and needs no loading from meta
        self.inv_freq, self.cos_sin_scale = rope_inverse_frequencies(
            config.qk_rope_head_dim, config.rope_theta, config.rope_scaling
        )

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [seq] or [batch, seq] -> cos, sin [..., rope_dim/2] in fp32."""
        angles = positions.float()[..., None] * self.inv_freq.to(positions.device)
        return angles.cos() * self.cos_sin_scale, angles.sin() * self.cos_sin_scale


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates interleaved pairs of x [batch, seq, heads, rope_dim] by cos/sin [(batch,) seq, rope_dim/2].

    The output is laid out de-interleaved ([rotated evens ; rotated odds]), like the released code's
    view/transpose before rotate_half; q and k get the same layout, so their dot products are unchanged.
    """
    cos = cos.unsqueeze(-2).to(x.dtype)  # broadcast over heads
    sin = sin.unsqueeze(-2).to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.cat((even * cos - odd * sin, odd * cos + even * sin), dim=-1)
