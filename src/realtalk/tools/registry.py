"""Typed Python functions as Realtime function tools.

``@tool`` turns a function (sync or async) into a :class:`Tool`: its name, the first paragraph
of its docstring as the description, and a JSON Schema of its parameters built by pydantic
from the type hints (``Args:`` lines in the docstring describe each parameter). Calls are
validated against the same model and run with a timeout; failures become a JSON error the
model can talk about, never an exception that escapes. Sync functions run on the registry's
:class:`~realtalk.tools.pool.ToolPool`, never on the threads the model stages use.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from realtalk import metrics
from realtalk.tools.pool import ToolPool, ToolPoolBusy

log = logging.getLogger("realtalk.tools")

Execution = Literal["client", "server"]
DEFAULT_TIMEOUT_S = 10.0
_ARG_LINE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


class ToolError(Exception):
    """Raise from a tool to report a failure in words the model can relay."""


@dataclass(frozen=True)
class ToolArgumentsError(Exception):
    """The arguments do not match the tool's schema; ``field`` names the first bad one."""

    message: str
    field: str | None


@dataclass
class Tool:
    name: str
    description: str
    function: Callable[..., Any]
    model: type[BaseModel]
    execution: Execution = "client"
    timeout_s: float = DEFAULT_TIMEOUT_S

    def schema(self) -> dict[str, Any]:
        """The Realtime function tool (session ``tools`` entry)."""
        parameters = self.model.model_json_schema()
        parameters.pop("title", None)
        for prop in parameters.get("properties", {}).values():
            prop.pop("title", None)
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": parameters,
        }

    def validate(self, arguments: Any) -> dict[str, Any]:
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except json.JSONDecodeError as exc:
                raise ToolArgumentsError(f"arguments are not valid JSON: {exc}", None) from None
        if not isinstance(arguments, dict):
            raise ToolArgumentsError("arguments must be a JSON object", None)
        try:
            parsed = self.model.model_validate(arguments)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            name = ".".join(str(p) for p in first.get("loc", ())) or None
            raise ToolArgumentsError(f"{name or 'arguments'}: {first['msg']}", name) from None
        return {key: getattr(parsed, key) for key in type(parsed).model_fields}

    async def run(self, arguments: Any, pool: ToolPool) -> Any:
        """Validate and call (a sync function on ``pool``); raises :class:`ToolArgumentsError`,
        :class:`ToolError`, :class:`TimeoutError`, :class:`ToolPoolBusy`, or whatever the
        function raised."""
        values = self.validate(arguments)
        async with asyncio.timeout(self.timeout_s):
            if inspect.iscoroutinefunction(self.function):
                return await self.function(**values)
            return await pool.run(self.function, **values)


def _description(doc: str) -> tuple[str, dict[str, str]]:
    """The docstring's first paragraph, and per-parameter text from an ``Args:`` section."""
    text = inspect.cleandoc(doc or "")
    summary = " ".join(re.split(r"\n\s*\n", text)[0].split()) if text else ""
    params: dict[str, str] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip().lower() in ("args:", "arguments:", "parameters:"):
            for arg_line in lines[index + 1 :]:
                if not arg_line.strip():
                    break
                if match := _ARG_LINE.match(arg_line):
                    params[match.group(1)] = match.group(2).strip()
            break
    return summary, params


def build_tool(
    function: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    execution: Execution = "client",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Tool:
    summary, param_docs = _description(function.__doc__ or "")
    signature = inspect.signature(function)
    hints = inspect.get_annotations(function, eval_str=True)
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {function.__name__}: *args and **kwargs cannot be described")
        if param.name not in hints:
            raise TypeError(f"tool {function.__name__}: parameter {param.name!r} needs a type hint")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (
            hints[param.name],
            Field(default, description=param_docs.get(param.name)),
        )
    tool_name = name or function.__name__
    model = create_model(
        f"{tool_name}_arguments",
        __config__=ConfigDict(extra="ignore", coerce_numbers_to_str=True),
        **fields,
    )
    return Tool(tool_name, description or summary, function, model, execution, timeout_s)


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    execution: Execution = "client",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    execution: Execution = "client",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool of a typed function: ``@tool`` or ``@tool(execution="server")``."""
    if function is not None:
        return build_tool(function)

    def wrap(fn: Callable[..., Any]) -> Tool:
        return build_tool(
            fn, name=name, description=description, execution=execution, timeout_s=timeout_s
        )

    return wrap


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)
    pool: ToolPool = field(default_factory=ToolPool)
    """Where the sync tools run (the server sizes it: ``REALTALK_TOOL_WORKERS``)."""

    def add(self, *tools: Tool) -> None:
        for item in tools:
            if item.name in self.tools:
                raise ValueError(f"a tool named {item.name!r} is already registered")
            self.tools[item.name] = item

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools.values())

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools.values()]

    def server_side(self) -> set[str]:
        return {t.name for t in self.tools.values() if t.execution == "server"}

    async def call(self, name: str, arguments: Any) -> dict[str, Any] | Any:
        """Run a tool and always return JSON-able output: the result, or ``{"error": ...}``.

        (Unknown names and bad arguments are reported the same way, so the model can recover.)"""
        found = self.tools.get(name)
        if found is None:
            return {"error": f"There is no tool named {name!r}."}
        try:
            return await run_safely(found, arguments, self.pool)
        except ToolPoolBusy as exc:
            return {"error": str(exc)}


async def run_safely(found: Tool, arguments: Any, pool: ToolPool) -> Any:
    """The tool's result, or ``{"error": ...}`` for anything that went wrong in the call; a
    full pool raises :class:`ToolPoolBusy` (the caller reports it: HTTP 503 or a tool error)."""
    outcome = "ok"
    try:
        return await found.run(arguments, pool)
    except ToolPoolBusy:
        outcome = "busy"
        raise
    except ToolArgumentsError as exc:
        outcome = "invalid_arguments"
        return {"error": f"Invalid arguments for {found.name}: {exc.message}"}
    except ToolError as exc:
        outcome = "error"
        return {"error": str(exc)}
    except TimeoutError:
        outcome = "timeout"
        return {"error": f"{found.name} did not finish within {found.timeout_s:g} seconds."}
    except Exception as exc:  # a bug in the tool: the model hears that it failed, not a trace
        outcome = "failed"
        log.warning("tool %s failed: %s", found.name, type(exc).__name__)
        return {"error": f"{found.name} failed unexpectedly ({type(exc).__name__})."}
    finally:
        metrics.TOOL_CALLS.labels(found.name, outcome).inc()
