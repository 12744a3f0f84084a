"""A stdio MCP server held open by the official `mcp` SDK on a background event loop.

The SDK's client lives inside async context managers bound to one event loop and one task. Tool
environments outlive any single caller's loop (a test module shares one server across tests; rollouts
run in the caller's loop), so the session runs on its own loop in a daemon thread and every call is
handed to it: `await server.call(name, arguments)` works from any event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from openk2.gym.environment import require

MCP = "mcp>=2.3,<3"


class McpServer:
    def __init__(
        self, command: str, args: list[str], env: Mapping[str, str], start_timeout_s: float = 60.0
    ) -> None:
        mcp = require("mcp", MCP)
        self._parameters = mcp.StdioServerParameters(command=command, args=args, env=dict(env))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openk2-mcp", daemon=True)
        self._thread.start()
        self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self.server_info: Any = None  # the server's name and version from its initialize reply
        self._task: asyncio.Task[None] | None = None
        self._finished = threading.Event()  # set once the SDK has shut the server process down
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        try:
            self.tools: list[Any] = self._ready.result(timeout=start_timeout_s)
        except Exception as error:
            self.close()
            raise RuntimeError(f"MCP server {command} {' '.join(args)}: did not start ({error})") from error

    async def _serve(self) -> None:
        mcp = require("mcp", MCP)
        self._stop = asyncio.Event()
        self._task = asyncio.current_task()
        try:
            async with (
                mcp.stdio_client(self._parameters) as (read, write),
                mcp.ClientSession(read, write) as session,
            ):
                self.server_info = (await session.initialize()).server_info
                self._session = session
                self._ready.set_result((await session.list_tools()).tools)
                await self._stop.wait()
        except BaseException as error:
            if not self._ready.done():
                self._ready.set_exception(error)
            raise
        finally:
            self._finished.set()

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """The server's `CallToolResult` for one tool call (snake_case fields: `structured_content`, `is_error`)."""
        if self._serving.done():
            raise RuntimeError("MCP server: the session has ended")
        call = asyncio.run_coroutine_threadsafe(self._session.call_tool(name, arguments), self._loop)
        return await asyncio.wrap_future(call)

    def close(self) -> None:
        if self._thread.is_alive():
            if not self._ready.done() and self._task is not None:
                # a server that never answered: cancel the handshake; the SDK's shielded clean-up then
                # closes its pipes and kills its process tree, which the loop must live to carry out
                self._loop.call_soon_threadsafe(self._task.cancel)
            elif self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            self._finished.wait(timeout=30)
            with contextlib.suppress(
                BaseException
            ):  # how the server exited is no concern of the caller's now
                self._serving.result(timeout=0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()
