"""What stands before the routes: a request body size limit (413) and `--api-key` Bearer authentication.

The size limit is checked on the declared `Content-Length` before any of the body is read, and
again on the bytes as they arrive (a chunked body declares none), so a 20 MB body costs the server
nothing. Authentication follows vLLM: every route except `/health`, `/version` and `/metrics`
needs `Authorization: Bearer <key>` when the server has a key.
"""

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = {"/health", "/version", "/metrics"}


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds the server's limit of {limit} bytes")


async def _send_error(send: Send, status: int, message: str, kind: str, code: str) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guards:
    """ASGI middleware: body size limit, then the API key."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, api_key: str | None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            offered = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(offered.encode(), f"Bearer {self.api_key}".encode()):
                await _send_error(
                    send, 401, "invalid or missing API key", "authentication_error", "invalid_api_key"
                )
                return
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            message = str(BodyTooLarge(self.max_body_bytes))
            await _send_error(send, 413, message, "invalid_request_error", "request_too_large")
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, limited, send)
