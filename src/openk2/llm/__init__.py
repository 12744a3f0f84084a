"""The one LLM interface (docs/architecture.md): every model call in OpenK2 goes through `LLM.chat`.

    from openk2.llm import LLMConfig, load_llm, SamplingParams
    llm = load_llm(LLMConfig(backend="endpoint", base_url="http://127.0.0.1:8000/v1"))
    reply = llm.chat(messages, tools, SamplingParams(temperature=0.6))
    reply.message, reply.finish_reason, reply.usage, reply.tokens

Back ends: `K2Engine` (an OpenK2 checkpoint, in process), `TransformersLLM` (a local HF model, the
embedded teacher `load_teacher()`), `OpenAIEndpoint` (any OpenAI-compatible server). The in-process
back ends batch concurrent callers continuously (`InProcessEngine`): requests join and leave the
running batch between decoding steps, and `astream` yields a reply as it is generated.
"""

from openk2.llm.config import LLMConfig, load_concurrent_llm, load_llm
from openk2.llm.protocol import LLM, ModelUnavailable, Overloaded, ShutDown
from openk2.llm.tokenizer_file import tokenizer_file
from openk2.llm.types import (
    RECOMMENDED_TEMPERATURE,
    ChatRequest,
    Completion,
    FinishReason,
    NamedToolChoice,
    ReplyDelta,
    ResponseFormat,
    SampledTokens,
    SamplingParams,
    ToolCallDelta,
    ToolChoice,
    Usage,
    chat_request,
)

__all__ = [
    "LLM",
    "RECOMMENDED_TEMPERATURE",
    "ChatRequest",
    "Completion",
    "FinishReason",
    "LLMConfig",
    "ModelUnavailable",
    "NamedToolChoice",
    "Overloaded",
    "ReplyDelta",
    "ResponseFormat",
    "SampledTokens",
    "SamplingParams",
    "ShutDown",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
    "chat_request",
    "load_concurrent_llm",
    "load_llm",
    "tokenizer_file",
]
