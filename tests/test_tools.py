"""The tool registry, the example tools on a real SQLite file, and /api/tools."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Literal

import pytest
from fastapi.testclient import TestClient

from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.config import Settings
from realtalk.tools import ToolError, ToolRegistry, tool
from realtalk.tools.examples import example_registry
from realtalk.tools.loading import ToolsConfigError, load_tools
from tests.conftest import free_port, with_settings


def test_schema_from_type_hints_and_docstring() -> None:
    @tool
    def book_table(
        city: str,
        guests: int,
        when: Literal["lunch", "dinner"] = "dinner",
        allergies: list[str] | None = None,
        vip: bool = False,
    ) -> dict[str, str]:
        """Book a table at our restaurant.

        Longer text that is not part of the description.

        Args:
            city: Which of our restaurants.
            guests: How many people.
        """
        return {"ok": city}

    schema = book_table.schema()
    assert schema["type"] == "function" and schema["name"] == "book_table"
    assert schema["description"] == "Book a table at our restaurant."
    params = schema["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["city", "guests"]
    assert params["properties"]["city"] == {
        "type": "string",
        "description": "Which of our restaurants.",
    }
    assert params["properties"]["guests"]["type"] == "integer"
    assert params["properties"]["when"]["enum"] == ["lunch", "dinner"]
    assert params["properties"]["vip"]["default"] is False
    assert "anyOf" in params["properties"]["allergies"]


def test_tools_need_type_hints() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(TypeError, match="needs a type hint"):
        tool(untyped)


async def test_calls_validate_run_and_report_errors() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @tool(timeout_s=0.2)
    async def slow() -> str:
        """Takes too long."""
        await asyncio.sleep(5)
        return "late"

    @tool
    def broken() -> str:
        """Has a bug."""
        raise KeyError("secret internals")

    @tool
    def refuses() -> str:
        """Says no."""
        raise ToolError("That is not allowed.")

    registry = ToolRegistry()
    registry.add(add, slow, broken, refuses)
    assert await registry.call("add", {"a": 2, "b": 3}) == 5
    assert await registry.call("add", '{"a": "4", "b": 1}') == 5  # lax JSON from a model
    assert "b: Field required" in (await registry.call("add", {"a": 1}))["error"]
    assert "not valid JSON" in (await registry.call("add", "{a: 1"))["error"]
    assert "within 0.2 seconds" in (await registry.call("slow", {}))["error"]
    failed = (await registry.call("broken", {}))["error"]
    assert "failed unexpectedly (KeyError)" in failed and "secret" not in failed
    assert await registry.call("refuses", {}) == {"error": "That is not allowed."}
    assert "no tool named" in (await registry.call("nope", {}))["error"]
    with pytest.raises(ValueError, match="already registered"):
        registry.add(add)


@pytest.fixture
def examples(tmp_path: Path) -> ToolRegistry:
    return example_registry(
        tmp_path, weather_url=f"http://127.0.0.1:{free_port()}", weather_timeout_s=1
    )


def status_in_db(tmp_path: Path, order_id: str) -> str:
    with sqlite3.connect(tmp_path / "orders.sqlite3") as db:
        return str(
            db.execute("SELECT status FROM orders WHERE order_id = ?", (order_id,)).fetchone()[0]
        )


async def test_orders_in_sqlite(examples: ToolRegistry, tmp_path: Path) -> None:
    order = await examples.call("lookup_order", {"order_id": "1001"})
    assert order["status"] == "shipped" and order["item"] == "noise-cancelling headphones"
    assert (await examples.call("lookup_order", {"order_id": "order #1004"}))[
        "status"
    ] == "processing"
    assert "no order 9999" in (await examples.call("lookup_order", {"order_id": "9999"}))["error"]
    assert (
        "not an order number" in (await examples.call("lookup_order", {"order_id": "abc"}))["error"]
    )

    cancelled = await examples.call("cancel_order", {"order_id": "1002"})
    assert cancelled["status"] == "cancelled"
    assert status_in_db(tmp_path, "1002") == "cancelled"
    again = await examples.call("cancel_order", {"order_id": "1002"})
    assert "already cancelled" in again["message"]  # idempotent
    refused = await examples.call("cancel_order", {"order_id": "1001"})
    assert "already been shipped" in refused["error"]
    assert status_in_db(tmp_path, "1001") == "shipped"

    recent = await examples.call("list_recent_orders", {"email": "ADA@example.com"})
    assert {o["order_id"] for o in recent["orders"]} == {"1001", "1002"}
    assert "No orders" in (await examples.call("list_recent_orders", {"email": "x@y.z"}))["error"]
    # The database persists: a new registry on the same folder sees the change.
    again_registry = example_registry(tmp_path)
    assert (await again_registry.call("lookup_order", {"order_id": "1002"}))[
        "status"
    ] == "cancelled"


async def test_time_and_weather(examples: ToolRegistry, tmp_path: Path) -> None:
    paris = await examples.call("get_time", {"timezone": "Europe/Paris"})
    assert paris["timezone"] == "Europe/Paris" and len(paris["time"]) == 5
    assert (
        "not a time zone" in (await examples.call("get_time", {"timezone": "Mars/Base"}))["error"]
    )
    offline = await examples.call("get_weather", {"city": "Paris"})
    assert offline == {"error": "The weather service is unreachable right now."}


class _Weather(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/v1/search"):
            body = {"results": [{"name": "Paris", "latitude": 48.85, "longitude": 2.35}]}
        else:
            body = {"current": {"temperature_2m": 17.5, "wind_speed_10m": 9.0, "weather_code": 1}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def weather_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Weather)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_weather_from_a_configured_service(tmp_path: Path, weather_server: str) -> None:
    registry = example_registry(tmp_path, weather_url=weather_server)
    assert await registry.call("get_weather", {"city": "Paris"}) == {
        "city": "Paris",
        "temperature_c": 17.5,
        "wind_kmh": 9.0,
        "weather_code": 1,
    }


async def _no_models(_: ServerState) -> None:
    return None


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, warmup=_no_models)) as test_client:
        yield test_client


def test_api_tools_endpoint(client: TestClient, settings: Settings) -> None:
    listed = client.get("/api/tools").json()["tools"]
    assert {t["name"] for t in listed} >= {"lookup_order", "cancel_order"}
    ok = client.post("/api/tools/lookup_order", json={"order_id": "1003"})
    assert ok.status_code == 200 and ok.json()["status"] == "delivered"
    missing = client.post("/api/tools/launch_rockets", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "tool_not_found"
    invalid = client.post("/api/tools/lookup_order", json={"order": "1003"})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["param"] == "order_id"
    failed = client.post("/api/tools/cancel_order", json={"order_id": "1001"})
    assert failed.status_code == 200 and "shipped" in failed.json()["error"]
    bad_json = client.post(
        "/api/tools/lookup_order", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400


def test_users_add_their_own_tools(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "shop_tools.py"
    package.write_text(
        "from realtalk.tools import tool\n\n"
        "@tool(execution='server')\n"
        "def opening_hours(day: str) -> str:\n"
        "    '''When the shop is open on a given day.'''\n"
        "    return '9 to 5' if day.lower() != 'sunday' else 'closed'\n\n"
        "TOOLS = [opening_hours]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_tools(
        with_settings(settings, tools="shop_tools:TOOLS", server_tools=["lookup_order"])
    )
    assert registry.get("opening_hours") is not None
    assert registry.server_side() == {"opening_hours", "lookup_order"}
    assert asyncio.run(registry.call("opening_hours", {"day": "Sunday"})) == "closed"
    with pytest.raises(ToolsConfigError, match="no tool named 'nope'"):
        load_tools(with_settings(settings, server_tools=["nope"]))
    with pytest.raises(ToolsConfigError, match="cannot import"):
        load_tools(with_settings(settings, tools="no_such_module:TOOLS"))
    sys.modules.pop("shop_tools", None)


def test_page_session_lists_server_side_tools(settings: Settings) -> None:
    custom = with_settings(settings, server_tools=["lookup_order"])
    with TestClient(create_app(custom, warmup=_no_models)) as client:
        data = client.post("/api/realtime/session").json()
    assert data["server_tools"] == ["lookup_order"]
