"""Multi-head Latent Attention (DeepSeek-V2/V3 MLA, K2 report §2.3), with QK-Clip's hooks (§2.1).

Per token, keys and values are compressed to one latent c^KV (kv_lora_rank) plus one rotary key k^R shared by
all heads; queries optionally go through a low-rank q_lora_rank bottleneck. Training and prefill expand the
latent to per-head keys/values; decoding caches only (c^KV, k^R) and absorbs the up-projections into q and o.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from openk2.model.config import K2Config
from openk2.model.norm import RMSNorm
from openk2.model.protocols import extension_point
from openk2.model.rope import apply_rotary, softmax_scale


@dataclass
class LatentCache:
    """One layer's decode cache: the normalised latent and the rotated shared key, nothing per head."""

    latent: torch.Tensor  # [batch, max_len, kv_lora_rank]
    rope_key: torch.Tensor  # [batch, max_len, qk_rope_head_dim]
    length: int = 0
    # left padding: row b's tokens start at slot first_slot[b]; slots before it are never attended to
    first_slot: torch.Tensor | None = None  # [batch]

    @classmethod
    def allocate(
        cls,
        config: K2Config,
        batch: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device,
        first_slot: torch.Tensor | None = None,
    ) -> LatentCache:
        latent = torch.empty(batch, max_len, config.kv_lora_rank, dtype=dtype, device=device)
        rope_key = torch.empty(batch, max_len, config.qk_rope_head_dim, dtype=dtype, device=device)
        return cls(latent, rope_key, first_slot=first_slot)

    def visible(self, q_len: int, offset: int) -> torch.Tensor | None:
        """[batch, q_len, offset + q_len]: may query t (at slot offset + t) see slot s? None without padding.

        A padding query sees only itself, so its (unused) softmax stays finite.
        """
        if self.first_slot is None:
            return None
        query_slot = torch.arange(offset, offset + q_len, device=self.latent.device)[:, None]
        key_slot = torch.arange(offset + q_len, device=self.latent.device)[None, :]
        real_key = key_slot >= self.first_slot[:, None, None]
        return (key_slot <= query_slot) & (real_key | (key_slot == query_slot))

    def append(self, latent: torch.Tensor, rope_key: torch.Tensor) -> None:
        end = self.length + latent.shape[1]
        if end > self.latent.shape[1]:
            raise ValueError(f"LatentCache: {end} tokens exceed the allocated {self.latent.shape[1]}")
        self.latent[:, self.length : end] = latent
        self.rope_key[:, self.length : end] = rope_key
        self.length = end


MAX_LOGIT_CHUNK_ELEMENTS = 2**24  # fp32 logits held at once while recording S_max: 64 MiB


@torch.no_grad()
def causal_max_logit_per_head(
    query: torch.Tensor, key: torch.Tensor, scale: float, visible: torch.Tensor | None = None
) -> torch.Tensor:
    """S_max^h: max over the batch and causally visible (i, j) of the scaled logit q_i·k_j (K2 report §2.1).

    query [batch, heads, q_len, d], key [batch, heads, k_len, d]; visible [batch, q_len, k_len] where padding
    hides keys (else causal, query i at key position i + k_len - q_len). Computed a block of queries at a
    time against only the keys they can see, so at most MAX_LOGIT_CHUNK_ELEMENTS fp32 logits exist at once,
    never [heads, q_len, k_len] for a whole sequence (4 GiB at K2's 64 heads and 4k tokens).
    """
    batch, heads, q_len, _ = query.shape
    k_len = key.shape[2]
    offset = k_len - q_len
    rows = max(1, MAX_LOGIT_CHUNK_ELEMENTS // (heads * k_len))
    result = torch.full((heads,), float("-inf"), device=query.device)
    for index in range(batch):
        for start in range(0, q_len, rows):
            end = min(start + rows, q_len)
            keys_seen = offset + end  # causal: no query of this block sees past it
            logits = query[index, :, start:end].float() @ key[index, :, :keys_seen].float().transpose(-1, -2)
            if visible is None:
                sees = torch.ones(end - start, keys_seen, dtype=torch.bool, device=query.device).tril(
                    offset + start
                )
            else:
                sees = visible[index, start:end, :keys_seen]
            block_max = logits.masked_fill_(~sees, float("-inf")).amax(dim=(1, 2)) * scale
            result = torch.maximum(result, block_max)
    return result


class MultiHeadLatentAttention(nn.Module):
    def __init__(self, config: K2Config) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qk_nope_head_dim = config.qk_nope_head_dim
        self.qk_rope_head_dim = config.qk_rope_head_dim
        self.v_head_dim = config.v_head_dim
        self.kv_lora_rank = config.kv_lora_rank
        self.q_lora_rank = config.q_lora_rank
        self.softmax_scale = softmax_scale(config)
        q_width = self.num_heads * config.qk_head_dim

        if config.q_lora_rank is None:
            self.q_proj = nn.Linear(config.hidden_size, q_width, bias=False)
        else:
            self.q_a_proj = nn.Linear(config.hidden_size, config.q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(config.q_lora_rank, config.rms_norm_eps)
            self.q_b_proj = nn.Linear(config.q_lora_rank, q_width, bias=False)
        # down-projection to the latent c^KV and the shared rotary key k^R in one matmul
        self.kv_a_proj_with_mqa = nn.Linear(
            config.hidden_size, config.kv_lora_rank + config.qk_rope_head_dim, bias=False
        )
        self.kv_a_layernorm = RMSNorm(config.kv_lora_rank, config.rms_norm_eps)
        # up-projection of the latent to per-head k^C (nope) and v
        self.kv_b_proj = nn.Linear(
            config.kv_lora_rank, self.num_heads * (config.qk_nope_head_dim + config.v_head_dim), bias=False
        )
        self.o_proj = nn.Linear(self.num_heads * config.v_head_dim, config.hidden_size, bias=False)

        # QK-Clip protocol (openk2.optim): recording is off unless an optimizer switches it on
        self.record_max_logit = False
        self.max_logit_per_head: torch.Tensor | None = None

    @property
    def query_projection(self) -> nn.Linear:
        """The matrix whose rows are per-head q^C and q^R: q_proj, or q_b_proj after the low-rank bottleneck."""
        return self.q_proj if self.q_lora_rank is None else self.q_b_proj

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LatentCache | None = None,
        visible: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """visible [batch, seq, seq] (training only): which keys each query may see; None: causal."""
        batch, seq, _ = x.shape
        query_latent = self._query_latent(x)
        latent, rope_key = self.kv_a_proj_with_mqa(x).split(
            [self.kv_lora_rank, self.qk_rope_head_dim], dim=-1
        )
        latent = self.kv_a_layernorm(latent)  # [batch, seq, kv_lora_rank]
        rope_key = apply_rotary(rope_key.unsqueeze(2), cos, sin).squeeze(2)  # [batch, seq, qk_rope]

        if cache is None or cache.length == 0:
            if cache is not None:
                visible = cache.visible(seq, offset=0)
                cache.append(latent, rope_key)
            query, key, value = self.up_projections(query_latent, latent, rope_key, cos, sin)
            out = self._attend_expanded(query, key, value, visible)
        else:
            offset = cache.length
            cache.append(latent, rope_key)
            q_nope, q_rope = self._query_heads(query_latent, cos, sin)
            out = self._attend_absorbed(
                q_nope,
                q_rope,
                cache.latent[:, : cache.length],
                cache.rope_key[:, : cache.length],
                offset,
                cache.visible(seq, offset),
            )
        return self.o_proj(out.reshape(batch, seq, self.num_heads * self.v_head_dim))

    def _query_latent(self, x: torch.Tensor) -> torch.Tensor:
        """c^Q: the normalised low-rank query latent, or x itself without the bottleneck."""
        if self.q_lora_rank is None:
            return x
        return self.q_a_layernorm(self.q_a_proj(x))

    def _query_heads(
        self, query_latent: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Query up-projection: per-head q^C [batch, seq, heads, qk_nope] and rotated q^R [.., qk_rope]."""
        batch, seq, _ = query_latent.shape
        q = self.query_projection(query_latent).view(
            batch, seq, self.num_heads, self.qk_nope_head_dim + self.qk_rope_head_dim
        )
        q_nope, q_rope = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        return q_nope, apply_rotary(q_rope, cos, sin)

    @extension_point
    def up_projections(
        self,
        query_latent: torch.Tensor,
        latent: torch.Tensor,
        rope_key: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training/prefill: per-head query, key and value [batch, heads, seq, qk_head_dim] from the latents.

        v is zero-padded to qk_head_dim: fused attention kernels want one head dim for q, k and v.
        """
        batch, seq = latent.shape[:2]
        q_nope, q_rope = self._query_heads(query_latent, cos, sin)
        kv = self.kv_b_proj(latent).view(batch, seq, self.num_heads, self.qk_nope_head_dim + self.v_head_dim)
        k_nope, value = kv.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        shared_rope_key = rope_key.unsqueeze(2).expand(-1, -1, self.num_heads, -1)
        query = torch.cat((q_nope, q_rope), dim=-1).transpose(1, 2)  # [batch, heads, seq, qk_head_dim]
        key = torch.cat((k_nope, shared_rope_key), dim=-1).transpose(1, 2)
        value = value.transpose(1, 2)  # [batch, heads, seq, v_head_dim]
        padding = query.shape[-1] - self.v_head_dim
        return query, key, F.pad(value, (0, padding)) if padding > 0 else value

    def _attend_expanded(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, visible: torch.Tensor | None = None
    ) -> torch.Tensor:
        """SDPA over the expanded heads: causal, or `visible` [batch, q, k] under left padding.

        QK-Clip's max logits are recorded on request."""
        self.max_logit_per_head = (
            causal_max_logit_per_head(query, key, self.softmax_scale, visible)
            if self.record_max_logit
            else None
        )
        if visible is None:
            out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=self.softmax_scale)
        else:
            out = F.scaled_dot_product_attention(
                query, key, value, attn_mask=visible[:, None], scale=self.softmax_scale
            )
        return out[..., : self.v_head_dim].transpose(1, 2)  # [batch, seq, heads, v_head_dim]

    def _attend_absorbed(
        self,
        q_nope: torch.Tensor,
        q_rope: torch.Tensor,
        latent: torch.Tensor,
        rope_key: torch.Tensor,
        offset: int,
        visible: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode: attend in latent space; W_UK is absorbed into q and W_UV applied after the weighted sum.

        Query t sits at slot offset + t; `visible` [batch, q, k] replaces the causal mask under left padding.
        """
        up = self.kv_b_proj.weight.view(self.num_heads, self.qk_nope_head_dim + self.v_head_dim, -1)
        up_key, up_value = up.split(
            [self.qk_nope_head_dim, self.v_head_dim], dim=1
        )  # [heads, *, kv_lora_rank]
        q_latent = torch.einsum("bthn,hnr->bhtr", q_nope, up_key)
        logits = torch.einsum("bhtr,bsr->bhts", q_latent, latent) + torch.einsum(
            "bthe,bse->bhts", q_rope, rope_key
        )
        logits = logits * self.softmax_scale
        if visible is None:
            q_len, k_len = logits.shape[-2:]
            visible = torch.ones(q_len, k_len, dtype=torch.bool, device=logits.device).tril(offset)[None]
        logits = logits.masked_fill(~visible[:, None], float("-inf"))
        self.max_logit_per_head = (
            logits.detach().float().amax(dim=(0, 2, 3)) if self.record_max_logit else None
        )
        probs = logits.float().softmax(dim=-1).to(latent.dtype)
        out_latent = torch.einsum("bhts,bsr->bthr", probs, latent)
        return torch.einsum("bthr,hvr->bthv", out_latent, up_value)

    @torch.no_grad()
    def qk_clip_(self, gamma_per_head: torch.Tensor) -> None:
        """K2 report §2.1, Algorithm 1: scale head h's logits by γ_h touching only its unshared parts.

        q^C and k^C rows × √γ_h, q^R rows × γ_h; v rows and the shared rotary key k^R are left alone.
        Heads with γ_h ≥ 1 are not written at all.
        """
        heads = (gamma_per_head < 1).nonzero().squeeze(1)
        if heads.numel() == 0:
            return
        gamma = gamma_per_head[heads].float()[:, None, None]
        nope = self.qk_nope_head_dim
        q_weight = self.query_projection.weight.view(self.num_heads, nope + self.qk_rope_head_dim, -1)
        kv_weight = self.kv_b_proj.weight.view(self.num_heads, nope + self.v_head_dim, -1)
        q_weight[heads, :nope] = (q_weight[heads, :nope].float() * gamma.sqrt()).to(q_weight.dtype)
        q_weight[heads, nope:] = (q_weight[heads, nope:].float() * gamma).to(q_weight.dtype)
        kv_weight[heads, :nope] = (kv_weight[heads, :nope].float() * gamma.sqrt()).to(kv_weight.dtype)
