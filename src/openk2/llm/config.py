"""Which model a stage talks to, as a recipe names it: an OpenK2 checkpoint, the teacher, or an endpoint."""

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openk2.llm.protocol import LLM, ModelUnavailable


class LLMConfig(BaseModel):
    """`backend = "teacher"` (the default), `"checkpoint"` with `checkpoint`, or `"endpoint"` with `base_url`."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["teacher", "checkpoint", "endpoint"] = "teacher"
    checkpoint: Path | None = None  # an `openk2 pretrain` / `openk2 sft` checkpoint directory
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # the endpoint's model name; defaults to the first of its /v1/models
    api_key_env: str | None = None  # the environment variable holding the endpoint's key, if it needs one
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _backend_has_its_fields(self) -> "LLMConfig":
        if self.backend == "checkpoint" and self.checkpoint is None:
            raise ValueError("checkpoint: required when backend is 'checkpoint'")
        if self.backend == "endpoint" and not self.base_url:
            raise ValueError("base_url: required when backend is 'endpoint'")
        return self


def load_llm(config: LLMConfig, max_batch_size: int = 32) -> LLM:
    """The configured back end, ready to chat; an in-process model generates up to `max_batch_size`
    requests at once (continuous batching) and queues more."""
    if config.backend == "checkpoint":
        from openk2.llm.k2_engine import K2Engine

        assert config.checkpoint is not None  # checked by the validator
        return K2Engine.from_checkpoint(config.checkpoint, max_batch_size=max_batch_size)
    if config.backend == "endpoint":
        import openai

        from openk2.llm.openai_endpoint import OpenAIEndpoint

        assert config.base_url is not None
        api_key = "EMPTY"
        if config.api_key_env:
            if config.api_key_env not in os.environ:
                raise ValueError(f"api_key_env: the environment variable {config.api_key_env} is not set")
            api_key = os.environ[config.api_key_env]
        model = config.model
        if model is None:
            listing = openai.OpenAI(base_url=config.base_url, api_key=api_key, timeout=config.timeout_s)
            try:
                served = [entry.id for entry in listing.models.list()]
            except openai.APIError as error:  # not listening, refused, timed out, or not an OpenAI API
                raise ModelUnavailable(f"{config.base_url}: {error}") from error
            if not served:
                raise ValueError(f"model: {config.base_url} serves no models")
            model = served[0]
        return OpenAIEndpoint(
            config.base_url,
            model,
            api_key=api_key,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
        )
    from openk2.llm.teacher import load_teacher

    return load_teacher(max_batch_size=max_batch_size)


def load_concurrent_llm(config: LLMConfig, concurrency: int) -> LLM:
    """The back end ready for `concurrency` simultaneous `achat` callers; `close()` it when done.

    An endpoint takes concurrent requests itself; an in-process model batches them continuously.
    """
    return load_llm(config, max_batch_size=concurrency)
