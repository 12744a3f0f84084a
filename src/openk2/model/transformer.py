"""K2ForCausalLM: the DeepSeek-V3 decoder with K2's shape (report §2.3), top to bottom.

embed -> [RMSNorm -> MLA -> +residual -> RMSNorm -> (dense SwiGLU | MoE) -> +residual] x L -> RMSNorm -> lm_head
Module and parameter names are the HF checkpoint's, so state dicts map onto `model.safetensors` one to one
(stacked routed experts are split per expert on save, see checkpoint.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from openk2.model.config import K2Config
from openk2.model.generate import generate
from openk2.model.loss import linear_cross_entropy, next_token_targets
from openk2.model.mla import LatentCache, MultiHeadLatentAttention
from openk2.model.moe import MoE, RoutedExperts, Router, SwiGLU
from openk2.model.norm import RMSNorm
from openk2.model.rope import RotaryEmbedding


@dataclass
class CausalLMOutput:
    logits: (
        torch.Tensor | None
    )  # [batch, seq, vocab]; None when labels are given (the loss never builds them)
    loss: torch.Tensor | None = None  # next-token cross-entropy (+ aux_loss when the MoE balance loss is on)
    aux_loss: torch.Tensor | None = None  # Σ over MoE layers of α·sequence-wise balance loss


class DecoderLayer(nn.Module):
    def __init__(self, config: K2Config, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = MultiHeadLatentAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = (
            MoE(config)
            if config.is_moe_layer(layer_index)
            else SwiGLU(config.hidden_size, config.intermediate_size)
        )

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LatentCache | None = None,
        visible: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, visible)
        return x + self.mlp(self.post_attention_layernorm(x))


class K2Model(nn.Module):
    def __init__(self, config: K2Config) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        caches: list[LatentCache] | None = None,
        position_ids: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids [batch, seq] -> final hidden states [batch, seq, hidden]; caches: one per layer, decoding.

        Packed training rows (several conversations in one row) pass position_ids [batch, seq], restarting
        at 0 for each conversation, and document_ids [batch, seq], so that a token attends only to earlier
        tokens of its own document (a block-diagonal causal mask).
        """
        if caches and (position_ids is not None or document_ids is not None):
            raise ValueError("position_ids/document_ids: packed rows are for training, not cached decoding")
        if position_ids is None:
            start = caches[0].length if caches else 0
            position_ids = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
            if (
                caches and caches[0].first_slot is not None
            ):  # left padding: each row counts from its first token
                position_ids = (position_ids[None, :] - caches[0].first_slot[:, None]).clamp_min(0)
        cos, sin = self.rotary_emb(position_ids)
        visible = None if document_ids is None else document_causal_mask(document_ids)
        hidden = self.embed_tokens(input_ids)
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, cos, sin, caches[index] if caches else None, visible)
        return self.norm(hidden)


def document_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """[batch, seq] document ids -> [batch, seq, seq]: may query i see key j? (j ≤ i and the same document)."""
    seq = document_ids.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=document_ids.device).tril()
    return causal & (document_ids[:, :, None] == document_ids[:, None, :])


class K2ForCausalLM(nn.Module):
    def __init__(self, config: K2Config) -> None:
        super().__init__()
        self.config = config
        self.model = K2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, initializer_range) for every matrix, ones for norms, zero router bias (DeepSeek-V3 practice)."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding | Router):
                module.weight.normal_(0.0, std)
            if isinstance(module, Router):
                module.e_score_correction_bias.zero_()
            elif isinstance(module, RoutedExperts):
                for stacked in (module.gate_proj, module.up_proj, module.down_proj):
                    stacked.normal_(0.0, std)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """labels: the token ids themselves (shifted here); positions labelled -100 are ignored in the loss,
        which is fused with the lm_head a chunk of tokens at a time (loss.py): no [tokens, vocab] logits, so
        with labels the output carries no logits. position_ids, document_ids: packed rows (K2Model.forward).

        With config.aux_loss_alpha > 0 (and seq_aux), training forwards add DeepSeek-V3's sequence-wise
        balance loss. The K2 report does not say whether K2 used it: the tiny and small presets leave it at 0;
        kimi-k2 and moonlight carry their released configs' 0.001.
        """
        hidden = self.model(input_ids, position_ids=position_ids, document_ids=document_ids)
        if labels is None:
            return CausalLMOutput(logits=self.lm_head(hidden))
        loss = linear_cross_entropy(hidden.flatten(0, 1), self.lm_head.weight, next_token_targets(labels))
        aux_loss = None
        aux_losses = [moe.aux_loss for moe in self.moe_modules() if moe.aux_loss is not None]
        if aux_losses:
            aux_loss = torch.stack(aux_losses).sum()
            loss = loss + aux_loss
        return CausalLMOutput(logits=None, loss=loss, aux_loss=aux_loss)

    def attention_modules(self) -> list[MultiHeadLatentAttention]:
        return [module for module in self.modules() if isinstance(module, MultiHeadLatentAttention)]

    def moe_modules(self) -> list[MoE]:
        return [module for module in self.modules() if isinstance(module, MoE)]

    # -- HF checkpoints (checkpoint.py imports this class, hence the local import) ---------------------
    @classmethod
    def from_pretrained(
        cls, directory: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> K2ForCausalLM:
        from openk2.model.checkpoint import load_pretrained

        return load_pretrained(directory, dtype=dtype, device=device)

    def save_pretrained(self, directory: str | Path, max_shard_bytes: int = 5 * 2**30) -> None:
        from openk2.model.checkpoint import save_pretrained

        save_pretrained(self, directory, max_shard_bytes=max_shard_bytes)

    # model.generate(input_ids, max_new_tokens, temperature=0.0, top_p=1.0, eos_token_id=None, generator=None,
    # attention_mask=None, on_token=None): KV-cached decoding from MLA latents (generate.py)
    generate = generate
