"""YaRN against closed forms for K2's released config (the released code's formulas, derived by hand)."""

import math

import torch

from openk2.model import K2Config
from openk2.model.rope import apply_rotary, rope_inverse_frequencies, softmax_scale


def test_k2_yarn_keeps_pairs_below_19_and_interpolates_pairs_from_20():
    config = K2Config.preset("kimi-k2")
    inv_freq, cos_sin_scale = rope_inverse_frequencies(64, 50000.0, config.rope_scaling)
    original = 1.0 / 50000.0 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    torch.testing.assert_close(inv_freq[:19].double(), original[:19])
    torch.testing.assert_close(inv_freq[20:].double(), original[20:] / 32)
    assert cos_sin_scale == 1.0  # mscale / mscale_all_dim = 1


def test_k2_softmax_scale_includes_yarn_mscale_squared():
    mscale = 0.1 * math.log(32) + 1
    assert math.isclose(softmax_scale(K2Config.preset("kimi-k2")), 192**-0.5 * mscale**2, rel_tol=1e-12)
    assert abs(softmax_scale(K2Config.preset("kimi-k2")) - 0.1309) < 1e-4


def test_rotation_preserves_norm_and_makes_logits_depend_on_relative_position():
    inv_freq, _ = rope_inverse_frequencies(16, 10000.0, None)
    angles = torch.arange(12).float()[:, None] * inv_freq[None]
    cos, sin = angles.cos(), angles.sin()
    q = torch.randn(1, 1, 1, 16).expand(1, 12, 1, 16)
    k = torch.randn(1, 1, 1, 16).expand(1, 12, 1, 16)
    q_rot, k_rot = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1))
    logit = lambda i, j: (q_rot[0, i, 0] * k_rot[0, j, 0]).sum()  # noqa: E731
    torch.testing.assert_close(logit(5, 2), logit(9, 6))
    torch.testing.assert_close(logit(3, 3), logit(11, 11))
