"""A real MCP server for tests: the ``mcp`` package's MCPServer over streamable HTTP, served by
uvicorn on a free loopback port in a thread. It records every tool call and the HTTP headers
each request carried, so tests can tell what the engine really sent."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from tests.conftest import free_port

ORDERS = {"1001": "shipped on Monday; it arrives Friday", "1002": "being packed"}


class ShopMcpServer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        mcp = MCPServer("shop")

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
        def lookup_order(order_id: str) -> str:
            """Look up the status of a customer's order by its order number."""
            self.calls.append(("lookup_order", {"order_id": order_id}))
            status = ORDERS.get(order_id.strip().lstrip("#"))
            if status is None:
                raise ToolError(f"There is no order {order_id}.")
            return f"Order {order_id} was {status}." if "shipped" in status else status

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
        def get_weather(city: str) -> str:
            """The current weather in a city."""
            self.calls.append(("get_weather", {"city": city}))
            return f"It is sunny and 21 degrees in {city}."

        @mcp.tool()
        def cancel_order(order_id: str) -> str:
            """Cancel a customer's order by its order number."""
            self.calls.append(("cancel_order", {"order_id": order_id}))
            raise ToolError("The order database is offline; nothing was cancelled.")

        app = mcp.streamable_http_app()

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            await app(scope, receive, send)

        config = uvicorn.Config(recording, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ShopMcpServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the MCP server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
