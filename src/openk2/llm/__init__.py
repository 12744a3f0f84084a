"""The one LLM interface (docs/architecture.md): every model call in OpenK2 goes through `LLM.chat`.

    from openk2.llm import LLMConfig, load_llm, SamplingParams
    llm = load_llm(LLMConfig(backend="endpoint", base_url="http://127.0.0.1:8000/v1"))
    reply = llm.chat(messages, tools, SamplingParams(temperature=0.6))
    reply.message, reply.finish_reason, reply.usage, reply.tokens

Back ends: `K2Engine` (an OpenK2 checkpoint, in process), `TransformersLLM` (a local HF model, the
embedded teacher `load_teacher()`), `OpenAIEndpoint` (any OpenAI-compatible server). `BatchingLLM`
serves many concurrent callers of an in-process back end in batches.
"""

from openk2.llm.batching import BatchingLLM, Overloaded, ShutDown
from openk2.llm.config import LLMConfig, load_concurrent_llm, load_llm
from openk2.llm.protocol import LLM, ModelUnavailable
from openk2.llm.tokenizer_file import tokenizer_file
from openk2.llm.types import (
    RECOMMENDED_TEMPERATURE,
    ChatRequest,
    Completion,
    FinishReason,
    NamedToolChoice,
    SampledTokens,
    SamplingParams,
    ToolChoice,
    Usage,
    chat_request,
)

__all__ = [
    "LLM",
    "RECOMMENDED_TEMPERATURE",
    "BatchingLLM",
    "ChatRequest",
    "Completion",
    "FinishReason",
    "LLMConfig",
    "ModelUnavailable",
    "NamedToolChoice",
    "Overloaded",
    "SampledTokens",
    "SamplingParams",
    "ShutDown",
    "ToolChoice",
    "Usage",
    "chat_request",
    "load_concurrent_llm",
    "load_llm",
    "tokenizer_file",
]
