"""``POST /api/tools/{name}``: the page runs an application tool (client-side execution).

Unknown tool → 404; arguments that do not match the schema → 422 naming the field; a tool
that fails or times out → 200 with ``{"error": "..."}``, which the page hands to the model as
the call's output so it can tell the user; every tool thread taken (``tools/pool.py``) → 503
``tool_pool_busy`` with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from realtalk.app.errors import HTTPError, read_json_object
from realtalk.app.state import ServerState
from realtalk.tools.pool import ToolPoolBusy
from realtalk.tools.registry import ToolArgumentsError, run_safely

router = APIRouter(prefix="/api")


@router.get("/tools")
async def list_tools(request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.realtalk
    return {"tools": [{**t.schema(), "execution": t.execution} for t in state.tools]}


@router.post("/tools/{name}")
async def call_tool(name: str, request: Request) -> JSONResponse:
    state: ServerState = request.app.state.realtalk
    found = state.tools.get(name)
    if found is None:
        raise HTTPError(
            404, f"There is no tool named {name!r}.", code="tool_not_found", type="not_found_error"
        )
    arguments = await read_json_object(request)
    try:
        found.validate(arguments)
    except ToolArgumentsError as exc:
        raise HTTPError(
            422,
            f"Invalid arguments for {name}: {exc.message}",
            code="invalid_arguments",
            param=exc.field,
        ) from None
    try:
        return JSONResponse(await run_safely(found, arguments, state.tools.pool))
    except ToolPoolBusy as exc:
        raise HTTPError(
            503, str(exc), code="tool_pool_busy", type="server_error", headers={"Retry-After": "5"}
        ) from None
