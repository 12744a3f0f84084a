"""Every failure as OpenAI's error body `{"error": {"message", "type", "param", "code"}}`.

Bad requests are 400 and name the field (`messages[1].content`, `temperature`); a full queue is 429,
a stopping server 503; anything else is a 500 for that request only — the server keeps serving, and
the client learns only that it failed (the details go to the server's log, never to the client).
"""

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from openk2.chat import ChatFormatError
from openk2.llm import Overloaded, ShutDown

logger = logging.getLogger("openk2.serve")

# Our errors start with the field they name: "messages[2].content: required on user messages".
_FIELD_PREFIX = re.compile(r"^(?P<param>[A-Za-z_][\w.\[\]]*): ")


class UnknownModel(LookupError):
    """The request names a model this server does not serve."""


def error_response(
    status: int, message: str, kind: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": kind, "param": param, "code": code}},
    )


def invalid_request(message: str) -> JSONResponse:
    """A 400 whose `param` is the field the message starts with."""
    named = _FIELD_PREFIX.match(message)
    return error_response(400, message, "invalid_request_error", named["param"] if named else None)


def validation_error(
    error: ValidationError | RequestValidationError, located_in_body: bool = True
) -> JSONResponse:
    """A pydantic error on a request body as a 400 naming the field (`messages`, `stop`, `logit_bias.7`)."""
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        return error_response(400, f"the body is not valid JSON: {first['msg']}", "invalid_request_error")
    location = [str(part) for part in first["loc"][1 if located_in_body else 0 :]]
    # a union member's label ("str", "list[str]", "NamedToolChoice") is no field of the request
    location = [part for part in location if not _is_type_label(part)]
    param = ".".join(location) if location else None
    reason = "not a supported field" if first["type"] == "extra_forbidden" else first["msg"]
    return error_response(400, f"{param}: {reason}" if param else reason, "invalid_request_error", param)


def _is_type_label(part: str) -> bool:
    return (
        any(mark in part for mark in "[]-") or part[:1].isupper() or part in {"str", "int", "float", "bool"}
    )


def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return validation_error(error)


def _chat_format_error(_: Request, error: Exception) -> JSONResponse:
    return invalid_request(str(error))


def _unknown_model(_: Request, error: Exception) -> JSONResponse:
    return error_response(404, str(error), "invalid_request_error", "model", "model_not_found")


def _overloaded(_: Request, error: Exception) -> JSONResponse:
    return error_response(429, f"server overloaded: {error}", "rate_limit_error", code="server_overloaded")


def _shut_down(_: Request, error: Exception) -> JSONResponse:
    return error_response(503, str(error), "service_unavailable")


def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return error_response(error.status_code, str(error.detail), "invalid_request_error")


def _server_error(request: Request, error: Exception) -> JSONResponse:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal error; the server log has the details", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ChatFormatError, _chat_format_error)
    app.add_exception_handler(UnknownModel, _unknown_model)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(ShutDown, _shut_down)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
