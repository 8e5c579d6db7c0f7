"""Example tools that work offline: orders in SQLite, the time anywhere, the weather.

``example_registry(data_dir)`` builds them; the orders database is created and seeded on first
use in ``<data_dir>/orders.sqlite3``. Add your own tools the same way (see docs/tools.md).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from realtalk.tools.registry import Execution, ToolError, ToolRegistry, build_tool

SEED = [
    # order_id, email, item, status, placed (days ago), delivery note
    ("1001", "ada@example.com", "noise-cancelling headphones", "shipped", 3, "arrives Tuesday"),
    ("1002", "ada@example.com", "USB-C charger", "processing", 1, "ships in 2 days"),
    ("1003", "grace@example.com", "mechanical keyboard", "delivered", 12, "delivered last week"),
    ("1004", "linus@example.com", "4K monitor", "processing", 0, "ships tomorrow"),
    ("1005", "grace@example.com", "laptop stand", "cancelled", 20, "refunded"),
]


class OrderBook:
    """Orders in a real SQLite file; one connection per call, writes serialised."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("""CREATE TABLE IF NOT EXISTS orders (
                order_id TEXT PRIMARY KEY, email TEXT NOT NULL, item TEXT NOT NULL,
                status TEXT NOT NULL, placed_at TEXT NOT NULL, note TEXT NOT NULL)""")
            if db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0:
                now = datetime.now(UTC)
                db.executemany(
                    "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            oid,
                            email,
                            item,
                            status,
                            (now - timedelta(days=days)).date().isoformat(),
                            note,
                        )
                        for oid, email, item, status, days, note in SEED
                    ],
                )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5)
        db.row_factory = sqlite3.Row
        return db

    def get(self, order_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return dict(row) if row else None

    def by_email(self, email: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM orders WHERE lower(email) = lower(?) "
                "ORDER BY placed_at DESC LIMIT 5",
                (email,),
            ).fetchall()
        return [dict(r) for r in rows]

    def cancel(self, order_id: str) -> dict[str, Any]:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                raise ToolError(f"There is no order {order_id}.")
            if row["status"] == "cancelled":
                return {
                    "order_id": order_id,
                    "status": "cancelled",
                    "message": f"Order {order_id} was already cancelled.",
                }
            if row["status"] in ("shipped", "delivered"):
                raise ToolError(
                    f"Order {order_id} has already been {row['status']} "
                    "and can no longer be cancelled; it can be returned instead."
                )
            db.execute(
                "UPDATE orders SET status = 'cancelled', note = 'refund issued' WHERE order_id = ?",
                (order_id,),
            )
        return {
            "order_id": order_id,
            "status": "cancelled",
            "message": f"Order {order_id} is now cancelled and a refund was issued.",
        }


def _clean_order_id(order_id: str) -> str:
    digits = "".join(ch for ch in order_id if ch.isdigit())
    if not digits:
        raise ToolError(f"{order_id!r} is not an order number; order numbers are digits like 1001.")
    return digits


def example_registry(
    data_dir: Path,
    *,
    weather_url: str = "https://api.open-meteo.com",
    weather_timeout_s: float = 3.0,
    execution: dict[str, Execution] | None = None,
) -> ToolRegistry:
    """The example tools; ``execution`` picks client- or server-side per tool name."""
    book = OrderBook(data_dir / "orders.sqlite3")
    modes = execution or {}

    def lookup_order(order_id: str) -> dict[str, Any]:
        """Look up the status of a customer's order by its order number.

        Args:
            order_id: The order number the user said (digits).
        """
        order = book.get(_clean_order_id(order_id))
        if order is None:
            raise ToolError(f"There is no order {order_id}.")
        return {
            "order_id": order["order_id"],
            "item": order["item"],
            "status": order["status"],
            "placed_at": order["placed_at"],
            "note": order["note"],
        }

    def cancel_order(order_id: str) -> dict[str, Any]:
        """Cancel a customer's order by its order number. Shipped orders cannot be cancelled.

        Args:
            order_id: The order number the user said (digits).
        """
        return book.cancel(_clean_order_id(order_id))

    def list_recent_orders(email: str) -> dict[str, Any]:
        """List a customer's most recent orders by their email address.

        Args:
            email: The customer's email address.
        """
        orders = book.by_email(email.strip())
        if not orders:
            raise ToolError(f"No orders found for {email}.")
        return {
            "email": email,
            "orders": [
                {"order_id": o["order_id"], "item": o["item"], "status": o["status"]}
                for o in orders
            ],
        }

    def get_time(timezone: str = "UTC") -> dict[str, Any]:
        """Get the current local time in a time zone.

        Args:
            timezone: The IANA time zone of the place the user asked about.
        """
        try:
            zone = ZoneInfo(timezone.strip().replace(" ", "_"))
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(
                f"{timezone!r} is not a time zone I know; use a name like Europe/Paris."
            ) from None
        now = datetime.now(zone)
        return {
            "timezone": str(zone),
            "time": now.strftime("%H:%M"),
            "date": now.strftime("%A, %B %d, %Y"),
        }

    async def get_weather(city: str) -> dict[str, Any]:
        """Get the current weather for a city.

        Args:
            city: The city the user asked about.
        """
        try:
            async with httpx.AsyncClient(base_url=weather_url, timeout=weather_timeout_s) as http:
                place = (await http.get("/v1/search", params={"name": city, "count": 1})).json()
                if not place.get("results"):
                    raise ToolError(f"I could not find a city called {city}.")
                first = place["results"][0]
                weather = (
                    await http.get(
                        "/v1/forecast",
                        params={
                            "latitude": first["latitude"],
                            "longitude": first["longitude"],
                            "current": "temperature_2m,wind_speed_10m,weather_code",
                        },
                    )
                ).json()
        except httpx.HTTPError:
            raise ToolError("The weather service is unreachable right now.") from None
        current = weather.get("current", {})
        return {
            "city": first.get("name", city),
            "temperature_c": current.get("temperature_2m"),
            "wind_kmh": current.get("wind_speed_10m"),
            "weather_code": current.get("weather_code"),
        }

    registry = ToolRegistry()
    for function in (lookup_order, cancel_order, list_recent_orders, get_time, get_weather):
        registry.add(
            build_tool(
                function,
                execution=modes.get(function.__name__, "client"),
                timeout_s=weather_timeout_s + 2 if function is get_weather else 10.0,
            )
        )
    return registry
