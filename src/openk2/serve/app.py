"""The OpenAI-compatible HTTP app around one in-process engine (`openk2 serve`).

    POST /v1/chat/completions   chat, tools, structured output, streaming (SSE as generated)
    POST /v1/completions        raw prompts, streaming too
    GET  /v1/models, /v1/models/{id}, /health, /version, /metrics (Prometheus)
    POST /tokenize, /detokenize (vLLM's shapes), /update_weights_from_disk (SGLang's shape, for RL)

Bodies are parsed strictly from the raw bytes (a lone surrogate or a string-typed number is a 400,
not a conversion), tokenised and checked against the context before they queue, and generated
continuously batched; a client that disconnects stops its generation.
"""

import asyncio
import time
from importlib.metadata import version
from typing import TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from openk2.chat import ChatFormatError
from openk2.llm import chat_request
from openk2.llm.engine import InProcessEngine
from openk2.serve.chat_route import chat_completion
from openk2.serve.completion_route import text_completion
from openk2.serve.errors import UnknownModel, error_response, install_error_handlers, validation_error
from openk2.serve.guards import BodyTooLarge, Guards
from openk2.serve.metrics import CountRequests, ServerMetrics
from openk2.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    UpdateWeightsRequest,
    normalize_messages,
)

DEFAULT_MAX_BODY_BYTES = 8 * 2**20


Body = TypeVar("Body", bound=BaseModel)


async def _body(http: Request, schema: type[Body]) -> Body:
    """The request body parsed strictly from its bytes (ValidationError: a 400 naming the field)."""
    return schema.model_validate_json(await http.body() or b"{}", strict=True)


def create_app(
    engine: InProcessEngine, api_key: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    app = FastAPI(title="OpenK2", summary="OpenAI-compatible chat completions with K2 tool calling")
    install_error_handlers(app)
    app.add_exception_handler(
        ValidationError, lambda _, error: validation_error(error, located_in_body=False)
    )  # type: ignore[arg-type]
    app.add_exception_handler(
        BodyTooLarge,
        lambda _, error: error_response(413, str(error), "invalid_request_error", code="request_too_large"),
    )
    metrics = ServerMetrics(engine)
    app.add_middleware(Guards, max_body_bytes=max_body_bytes, api_key=api_key)
    app.add_middleware(CountRequests, metrics=metrics)
    started = int(time.time())
    model_entry = {"id": engine.model_name, "object": "model", "created": started, "owned_by": "openk2",
                   "max_model_len": engine.context_length}  # fmt: skip

    def check_model(name: str | None) -> None:
        if name is not None and name != engine.model_name:
            raise UnknownModel(f"model: {name!r} is not served here; available: [{engine.model_name!r}]")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": engine.model_name}

    @app.get("/version")
    async def server_version() -> dict[str, str]:
        return {"version": version("openk2")}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [model_entry]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, object]:
        check_model(model_id)
        return model_entry

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(http: Request) -> dict[str, object] | StreamingResponse:
        body = await _body(http, ChatCompletionRequest)
        check_model(body.model)
        return await chat_completion(engine, metrics, http, body)

    @app.post("/v1/completions", response_model=None)
    async def completions(http: Request) -> dict[str, object] | StreamingResponse:
        body = await _body(http, CompletionRequest)
        check_model(body.model)
        return await text_completion(engine, metrics, http, body)

    @app.post("/tokenize")
    async def tokenize(http: Request) -> dict[str, object]:
        body = await _body(http, TokenizeRequest)
        check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise ChatFormatError("prompt: give exactly one of prompt and messages")
        if body.prompt is not None:
            tokens = await asyncio.to_thread(engine.encode, body.prompt)
        else:
            assert body.messages is not None
            request = chat_request(normalize_messages(body.messages), body.tools)
            tokens = await asyncio.to_thread(engine.prompt_ids, request)
        return {"count": len(tokens), "max_model_len": engine.context_length, "tokens": tokens}

    @app.post("/detokenize")
    async def detokenize(http: Request) -> dict[str, object]:
        body = await _body(http, DetokenizeRequest)
        check_model(body.model)
        vocab = engine.runner.vocab_size
        if any(not 0 <= token < vocab for token in body.tokens):
            raise ChatFormatError(f"tokens: every id must be in [0, {vocab})")
        return {"prompt": engine.decode(body.tokens)}

    @app.post("/update_weights_from_disk")
    async def update_weights(http: Request) -> JSONResponse:
        body = await _body(http, UpdateWeightsRequest)
        if body.abort_all_requests:
            engine.scheduler.cancel_all()
        try:
            await asyncio.to_thread(engine.load_weights, body.model_path)
        except (OSError, ValueError) as error:
            return JSONResponse({"success": False, "message": f"model_path: {error}"}, status_code=400)
        return JSONResponse({"success": True, "message": f"loaded the weights of {body.model_path}"})

    return app
