"""K2Config: the model's shape, under the field names of the HF `config.json` of DeepSeek-V3 / Kimi-K2.

K2 report §2.3, Table 2; the released Kimi-K2-Instruct config.json is reproduced in `presets["kimi-k2"]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from openk2.recipes import describe_errors


class YarnRopeScaling(BaseModel):
    """YaRN context extension as the released DeepSeek/Kimi code reads it from `rope_scaling`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["yarn"] = "yarn"
    factor: float = Field(gt=0)
    original_max_position_embeddings: int = Field(gt=0)
    beta_fast: float = Field(default=32.0, gt=0)
    beta_slow: float = Field(default=1.0, gt=0)
    mscale: float = 1.0
    mscale_all_dim: float = 0.0


class K2Config(BaseModel):
    """Every field is the HF `config.json` key of the same name; invalid values name the field."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)

    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="dense SwiGLU width (the first_k_dense_replace layers)")
    moe_intermediate_size: int = Field(gt=0, description="width of one routed or shared expert")
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int | None = Field(default=None, gt=0)

    # Multi-head Latent Attention
    q_lora_rank: int | None = Field(default=None, gt=0, description="None: q is a plain projection")
    kv_lora_rank: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)
    rope_theta: float = Field(default=10000.0, gt=0)
    rope_scaling: YarnRopeScaling | None = None
    max_position_embeddings: int = Field(default=4096, gt=0)

    # Mixture of experts
    n_routed_experts: int = Field(gt=0)
    num_experts_per_tok: int = Field(gt=0)
    n_shared_experts: int = Field(default=1, ge=0)
    first_k_dense_replace: int = Field(default=1, ge=0)
    moe_layer_freq: Literal[1] = 1
    scoring_func: Literal["sigmoid"] = "sigmoid"
    topk_method: Literal["noaux_tc"] = "noaux_tc"
    n_group: int = Field(default=1, gt=0)
    topk_group: int = Field(default=1, gt=0)
    norm_topk_prob: bool = True
    routed_scaling_factor: float = Field(default=1.0, gt=0)
    aux_loss_alpha: float = Field(default=0.0, ge=0)
    seq_aux: bool = True

    rms_norm_eps: float = Field(default=1e-6, gt=0)
    initializer_range: float = Field(default=0.02, gt=0)
    tie_word_embeddings: bool = False
    attention_bias: Literal[False] = False
    hidden_act: Literal["silu"] = "silu"
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    num_nextn_predict_layers: Literal[0] = 0

    @model_validator(mode="after")
    def _check_consistency(self) -> K2Config:
        if self.num_key_value_heads not in (None, self.num_attention_heads):
            raise ValueError(
                f"num_key_value_heads: MLA has one latent per token shared by all heads; expected "
                f"{self.num_attention_heads} (= num_attention_heads), got {self.num_key_value_heads}"
            )
        if self.num_experts_per_tok > self.n_routed_experts:
            raise ValueError(
                f"num_experts_per_tok: expected at most n_routed_experts={self.n_routed_experts}, "
                f"got {self.num_experts_per_tok}"
            )
        if self.n_routed_experts % self.n_group:
            raise ValueError(
                f"n_group: must divide n_routed_experts={self.n_routed_experts}, got {self.n_group}"
            )
        if self.topk_group > self.n_group:
            raise ValueError(f"topk_group: expected at most n_group={self.n_group}, got {self.topk_group}")
        if self.n_group > 1 and self.n_routed_experts // self.n_group < 2:
            raise ValueError(
                "n_group: group-limited routing scores a group by its top-2 experts; need >= 2 per group"
            )
        experts_reachable = self.topk_group * (self.n_routed_experts // self.n_group)
        if self.num_experts_per_tok > experts_reachable:
            raise ValueError(
                f"num_experts_per_tok: {self.num_experts_per_tok} exceeds the {experts_reachable} experts "
                f"in the topk_group={self.topk_group} selected groups"
            )
        if self.qk_rope_head_dim % 2:
            raise ValueError(
                f"qk_rope_head_dim: RoPE rotates pairs, must be even, got {self.qk_rope_head_dim}"
            )
        if self.first_k_dense_replace > self.num_hidden_layers:
            raise ValueError(
                f"first_k_dense_replace: expected at most num_hidden_layers={self.num_hidden_layers}, "
                f"got {self.first_k_dense_replace}"
            )
        return self

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def is_moe_layer(self, layer_index: int) -> bool:
        return layer_index >= self.first_k_dense_replace

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> K2Config:
        if name not in PRESETS:
            raise ValueError(f"preset: unknown name {name!r}; expected one of {sorted(PRESETS)}")
        return cls(**PRESETS[name])

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any], source: str = "config") -> K2Config:
        """Reads a DeepSeek-V3 / Kimi-K2 config dict, old (`rope_scaling` + `rope_theta`) or new (`rope_parameters`)."""
        model_type = raw.get("model_type")
        if model_type not in ("deepseek_v3", "kimi_k2"):
            raise ValueError(f"{source}: model_type: expected 'deepseek_v3' or 'kimi_k2', got {model_type!r}")
        fields = dict(raw)
        rope_parameters = fields.pop("rope_parameters", None)
        if rope_parameters is not None:
            rope_parameters = dict(rope_parameters)
            fields["rope_theta"] = rope_parameters.pop("rope_theta", fields.get("rope_theta", 10000.0))
            rope_type = rope_parameters.pop("rope_type", rope_parameters.pop("type", "default"))
            fields["rope_scaling"] = (
                None if rope_type == "default" else {"type": rope_type, **rope_parameters}
            )
        elif isinstance(fields.get("rope_scaling"), dict):
            scaling = dict(fields["rope_scaling"])
            scaling["type"] = scaling.pop("rope_type", scaling.get("type"))
            fields["rope_scaling"] = scaling
        if fields.get("num_mtp_layers") and not fields.get("num_nextn_predict_layers"):
            fields["num_nextn_predict_layers"] = fields["num_mtp_layers"]
        if isinstance(fields.get("eos_token_id"), list):
            fields["eos_token_id"] = fields["eos_token_id"][0]
        try:
            return cls(**fields)
        except ValidationError as error:
            raise ValueError(f"{source}: {describe_errors(error, within='')}") from None

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> K2Config:
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"{directory}: no such checkpoint directory")
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no config.json in the checkpoint directory")
        try:
            fields = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        return cls.from_hf_dict(fields, source=str(path))

    def to_hf_dict(self) -> dict[str, Any]:
        """A config.json that current transformers reads as `DeepseekV3Config` (model_type deepseek_v3)."""
        fields = self.model_dump(exclude={"rope_scaling", "rope_theta", "num_key_value_heads"})
        rope_parameters: dict[str, Any] = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling is not None:
            scaling = self.rope_scaling.model_dump()
            rope_parameters.update(rope_type=scaling.pop("type"), **scaling)
        return {
            "architectures": ["DeepseekV3ForCausalLM"],
            "model_type": "deepseek_v3",
            **fields,
            "num_key_value_heads": self.num_attention_heads,
            "rope_parameters": rope_parameters,
            "rope_interleave": True,
            "num_mtp_layers": 0,
            "attention_dropout": 0.0,
            "torch_dtype": "float32",
        }


PRESETS: dict[str, dict[str, Any]] = {
    # K2's structure at laptop scale: 1 dense layer, 1 shared expert, top-4 of 16 sigmoid-routed experts, MLA.
    "tiny": dict(
        vocab_size=8192,
        hidden_size=128,
        intermediate_size=384,
        moe_intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        q_lora_rank=64,
        kv_lora_rank=64,
        qk_nope_head_dim=32,
        qk_rope_head_dim=16,
        v_head_dim=32,
        rope_theta=50000.0,
        max_position_embeddings=1024,
        n_routed_experts=16,
        num_experts_per_tok=4,
        n_shared_experts=1,
        first_k_dense_replace=1,
        routed_scaling_factor=2.827,
        bos_token_id=8192 - 256,
        eos_token_id=8192 - 255,
    ),
    # The benchmark shape (bench/, docs/benchmarks.md): hidden 256, 4 layers, 8 heads, 16 experts top-2 + 1 shared.
    "small": dict(
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=768,
        moe_intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=8,
        q_lora_rank=128,
        kv_lora_rank=128,
        qk_nope_head_dim=32,
        qk_rope_head_dim=16,
        v_head_dim=32,
        rope_theta=50000.0,
        max_position_embeddings=2048,
        n_routed_experts=16,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        routed_scaling_factor=2.827,
        bos_token_id=8192 - 256,
        eos_token_id=8192 - 255,
    ),
    # moonshotai/Moonlight-16B-A3B config.json (the Muon paper's model; plain q projection).
    "moonlight-16b-a3b": dict(
        vocab_size=163840,
        hidden_size=2048,
        intermediate_size=11264,
        moe_intermediate_size=1408,
        num_hidden_layers=27,
        num_attention_heads=16,
        num_key_value_heads=16,
        q_lora_rank=None,
        kv_lora_rank=512,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
        rope_theta=50000.0,
        rope_scaling=None,
        max_position_embeddings=8192,
        n_routed_experts=64,
        num_experts_per_tok=6,
        n_shared_experts=2,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
        norm_topk_prob=True,
        routed_scaling_factor=2.446,
        aux_loss_alpha=0.001,
        rms_norm_eps=1e-5,
        bos_token_id=163584,
        eos_token_id=163585,
    ),
    # Kimi-K2-Instruct config.json (July 2025), K2 report §2.3.
    "kimi-k2": dict(
        vocab_size=163840,
        hidden_size=7168,
        intermediate_size=18432,
        moe_intermediate_size=2048,
        num_hidden_layers=61,
        num_attention_heads=64,
        num_key_value_heads=64,
        q_lora_rank=1536,
        kv_lora_rank=512,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
        rope_theta=50000.0,
        rope_scaling=dict(
            type="yarn",
            factor=32.0,
            original_max_position_embeddings=4096,
            beta_fast=1.0,
            beta_slow=1.0,
            mscale=1.0,
            mscale_all_dim=1.0,
        ),
        max_position_embeddings=131072,
        n_routed_experts=384,
        num_experts_per_tok=8,
        n_shared_experts=1,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
        norm_topk_prob=True,
        routed_scaling_factor=2.827,
        aux_loss_alpha=0.001,
        seq_aux=True,
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        tie_word_embeddings=False,
        bos_token_id=163584,
        eos_token_id=163585,
    ),
}
