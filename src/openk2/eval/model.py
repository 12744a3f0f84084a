"""Which model is evaluated: `--model` names an OpenK2 checkpoint directory, `teacher` (the embedded
SmolLM2-135M-Instruct) or an OpenAI-compatible endpoint URL; its identity is stored with the results."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from openk2.llm import LLM, LLMConfig

# the Hugging Face layout, or a training checkpoint's torch.distributed.checkpoint shards (model/, which
# K2ForCausalLM.from_pretrained reads as they are: openk2.model.checkpoint.SHARDED_MODEL_DIR)
WEIGHT_FILES = ("*.safetensors", "model/*")


class ModelIdentity(BaseModel):
    """What was measured: enough to tell two result files of different weights apart."""

    model_config = ConfigDict(extra="forbid")

    spec: str  # what `--model` said
    backend: Literal["teacher", "checkpoint", "endpoint", "given"]  # given: an LLM object handed to evaluate
    name: str | None = None  # the served / reply model name (filled once loaded)
    checkpoint: str | None = None
    weights_sha256: str | None = None  # of the checkpoint's weight files, in name order
    base_url: str | None = None
    context_length: int | None = None  # in tokens, when the back end says (in-process models)


def model_config(
    spec: str,
    endpoint_model: str | None = None,
    api_key_env: str | None = None,
    timeout_s: float = 600.0,
    max_retries: int = 2,
) -> LLMConfig:
    """`teacher`, an http(s) URL, or a checkpoint directory -> the LLM interface's configuration."""
    if spec == "teacher":
        return LLMConfig(backend="teacher")
    if spec.startswith(("http://", "https://")):
        return LLMConfig(
            backend="endpoint",
            base_url=spec,
            model=endpoint_model,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            max_retries=max_retries,
        )
    directory = Path(spec)
    if not (directory / "config.json").is_file():
        raise ValueError(
            f"--model: {spec!r} is neither 'teacher', an http(s) endpoint URL, nor a checkpoint directory "
            "(a directory holding config.json)"
        )
    return LLMConfig(backend="checkpoint", checkpoint=directory)


def identity_before_loading(spec: str, config: LLMConfig) -> ModelIdentity:
    """The identity a resumed run must match: backend, location and (checkpoints) the weights' hash."""
    if config.backend == "checkpoint":
        assert config.checkpoint is not None
        return ModelIdentity(
            spec=spec,
            backend="checkpoint",
            checkpoint=str(config.checkpoint.resolve()),
            weights_sha256=weights_hash(config.checkpoint),
        )
    if config.backend == "endpoint":
        return ModelIdentity(spec=spec, backend="endpoint", base_url=config.base_url, name=config.model)
    return ModelIdentity(spec=spec, backend="teacher")


def weights_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(path for pattern in WEIGHT_FILES for path in directory.glob(pattern))
    if not files:
        raise ValueError(f"--model: {directory} holds no *.safetensors weights and no model/ shards")
    for path in files:
        digest.update(str(path.relative_to(directory)).encode())
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def context_length(llm: LLM) -> int | None:
    """The model's context in tokens when an in-process back end knows it (an endpoint does not say)."""
    length = getattr(llm, "context_length", None)
    return length if isinstance(length, int) else None
