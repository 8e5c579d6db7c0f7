"""MCP tools in a session: listing each configured server's tools in the background, offering
them to the model beside the function tools, running its calls on the server inside the reply
(or after the client approves them), and showing the results to the model.

- :class:`McpTools` (one per session) owns the listings and the approvals waiting for an
  answer. Listing never blocks the session's event loop; a reply that starts meanwhile waits
  for it (the listing's own deadline, plus :data:`READY_MARGIN_S`, at most).
- :class:`McpTurn` (one per reply) maps the model's tool names to servers and runs a call:
  ``mcp_call`` item → arguments → ``in_progress`` → the call → ``completed`` / ``failed``;
  the reply then goes on with the output. A tool that needs approval gets an
  ``mcp_approval_request`` item instead and the reply ends; the client's
  ``mcp_approval_response`` runs the call at once (``response.mcp_call.*`` on the call item
  of the ended reply) or refuses it, and the client's next ``response.create`` speaks about
  the result (a reply that starts while an approved call runs waits for it).

Every task here is spawned by the session, so closing the session cancels it, and its MCP
connection closes with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from realtalk.core.items import Item, new_id
from realtalk.core.mcp import CallError, McpChoice, McpDetails, McpServer
from realtalk.pipeline.llm import LLMRequest, ToolCall, ToolSpec
from realtalk.protocol import mcp_events
from realtalk.protocol.errors import ProtocolError
from realtalk.protocol.server_events import Event, ServerEvents
from realtalk.tools import mcp as client
from realtalk.tools.mcp import McpFailure, RemoteTool

if TYPE_CHECKING:
    from realtalk.session.responses import ResponseRun

log = logging.getLogger("realtalk.mcp")

READY_MARGIN_S = 2.0
"""A reply waits for listings (and approved calls) in progress at most their own deadline
plus this."""
MAX_ROUNDS = 3
"""MCP calls one reply may make before the model must answer in words."""
_ARGUMENT_CHUNK = 24

Spawn = Callable[[Coroutine[Any, Any, object]], "asyncio.Task[object]"]


@dataclass(slots=True)
class Listing:
    server: McpServer
    item_id: str = field(default_factory=lambda: new_id("mcpl"))
    tools: list[RemoteTool] | None = None
    """``None`` until listed (and for good if listing failed)."""
    failed: bool = False
    task: asyncio.Task[object] | None = None


@dataclass(slots=True)
class PendingApproval:
    server: McpServer
    call: Item
    output_index: int


class McpTools:
    def __init__(
        self,
        *,
        events: ServerEvents,
        emit: Callable[[Event | None], None],
        spawn: Spawn,
        add_item: Callable[[Item], str | None],
    ) -> None:
        self._events = events
        self._emit = emit
        self._spawn = spawn
        self._add_item = add_item
        self._listings: dict[tuple[Any, ...], Listing] = {}
        self._approvals: dict[str, PendingApproval] = {}
        self._calls: set[asyncio.Task[object]] = set()
        self.list_timeout_s = client.LIST_TIMEOUT_S
        self.call_timeout_s = client.CALL_TIMEOUT_S

    # ---- listing ------------------------------------------------------------------------
    def configure(self, servers: tuple[McpServer, ...], event_id: str | None = None) -> None:
        """The session's MCP tools are now ``servers``: list the new ones (and those whose
        listing failed), forget the removed ones (a listing in progress is cancelled)."""
        kept = self._ensure(servers, event_id, retry=True)
        for key, listing in self._listings.items():
            if key not in kept and listing.task is not None:
                listing.task.cancel()
        self._listings = kept

    def _ensure(
        self, servers: tuple[McpServer, ...], event_id: str | None, *, retry: bool
    ) -> dict[tuple[Any, ...], Listing]:
        """A listing per server: kept if it exists (and, with ``retry``, did not fail)."""
        chosen: dict[tuple[Any, ...], Listing] = {}
        for server in servers:
            key = server.key()
            listing = self._listings.get(key)
            if listing is None or (retry and listing.failed):
                listing = Listing(server)
                self._emit(mcp_events.list_tools("in_progress", listing.item_id))
                listing.task = self._spawn(self._list(listing, event_id))
            listing.server = server
            chosen[key] = self._listings[key] = listing
        return chosen

    async def _list(self, listing: Listing, event_id: str | None) -> None:
        server = listing.server
        try:
            tools = await client.list_tools(server, self.list_timeout_s)
        except McpFailure as exc:
            listing.failed = True
            log.warning("MCP server %s: listing failed (%s)", server.server_label, exc.error.kind)
            self._emit(mcp_events.list_tools("failed", listing.item_id))
            self._emit(
                self._events.error(
                    ProtocolError(
                        f"Could not list the tools of MCP server '{server.server_label}': "
                        f"{exc.error.message} The tool stays configured but offers no tools; "
                        "send session.update with it again to retry.",
                        "mcp_list_tools_failed",
                        "session.tools",
                        "server_error",
                        event_id,
                    )
                )
            )
            return
        listing.tools = [t for t in tools if server.allows(t.name, t.read_only)]
        item = Item(
            "mcp_list_tools",
            id=listing.item_id,
            mcp=McpDetails(
                server_label=server.server_label,
                tools=[
                    {
                        "name": t.name,
                        "description": t.description,
                        "input_schema": t.input_schema,
                        "annotations": t.annotations,
                    }
                    for t in listing.tools
                ],
            ),
        )
        previous = self._add_item(item)
        self._emit(self._events.item_added(item, previous))
        self._emit(self._events.item_done(item, previous))
        self._emit(mcp_events.list_tools("completed", listing.item_id))

    def turn(self, servers: tuple[McpServer, ...]) -> McpTurn | None:
        """The MCP side of one reply (``None`` when it has no MCP tools)."""
        if not servers:
            return None
        listings = list(self._ensure(servers, None, retry=False).values())
        return McpTurn(self, listings)

    async def ready(self, listings: list[Listing]) -> None:
        waiting = [t for t in (*(lst.task for lst in listings), *self._calls) if t is not None]
        if waiting:
            longest = max(self.list_timeout_s, self.call_timeout_s)
            await asyncio.wait(waiting, timeout=longest + READY_MARGIN_S)

    # ---- approvals ----------------------------------------------------------------------
    def check_answer(self, item: Item) -> None:
        """Before an ``mcp_approval_response`` item joins the conversation: it must answer a
        request that is still open."""
        request_id = item.mcp.approval_request_id if item.mcp else None
        if item.type == "mcp_approval_response" and request_id not in self._approvals:
            raise ProtocolError(
                f"No MCP approval request '{request_id}' is waiting for an answer.",
                "invalid_value",
                "item.approval_request_id",
            )

    def answer(self, item: Item) -> None:
        """Run the call an ``mcp_approval_response`` approves (a refused one never runs)."""
        if item.type != "mcp_approval_response" or item.mcp is None:
            return
        pending = self._approvals.pop(str(item.mcp.approval_request_id))
        assert pending.call.mcp is not None
        pending.call.mcp.approve, pending.call.mcp.reason = item.mcp.approve, item.mcp.reason
        if item.mcp.approve:
            task = self._spawn(self._run_approved(pending))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _run_approved(self, pending: PendingApproval) -> None:
        self._emit(mcp_events.call("in_progress", pending.call.id, pending.output_index))
        await run_call(pending.server, pending.call, self.call_timeout_s)
        failed = pending.call.mcp is not None and pending.call.mcp.error is not None
        stage: mcp_events.Stage = "failed" if failed else "completed"
        self._emit(mcp_events.call(stage, pending.call.id, pending.output_index))

    def request_approval(self, server: McpServer, call: Item, output_index: int) -> Item:
        request = Item(
            "mcp_approval_request",
            id=new_id("mcpr"),
            name=call.name,
            arguments=call.arguments,
            mcp=McpDetails(server_label=server.server_label),
        )
        assert call.mcp is not None
        call.mcp.approval_request_id = request.id
        self._approvals[request.id] = PendingApproval(server, call, output_index)
        return request


async def run_call(server: McpServer, call: Item, timeout_s: float) -> None:
    """Call the tool on its server; the item gets the ``output`` or the ``error``."""
    assert call.mcp is not None
    try:
        arguments = json.loads(call.arguments or "{}")
        if not isinstance(arguments, dict):
            raise ValueError("not an object")
    except ValueError:
        call.mcp.error = CallError("tool_execution_error", "The arguments are not a JSON object.")
        return
    try:
        call.output = await client.call_tool(server, call.name or "", arguments, timeout_s)
    except McpFailure as exc:
        log.info("MCP server %s: call failed (%s)", server.server_label, exc.error.kind)
        call.mcp.error = exc.error


class McpTurn:
    """The MCP tools of one reply, under the names the model sees."""

    def __init__(self, tools: McpTools, listings: list[Listing]) -> None:
        self._tools = tools
        self._listings = listings
        self._index: dict[str, tuple[McpServer, RemoteTool]] = {}
        self.rounds = 0

    async def ready(self) -> None:
        await self._tools.ready(self._listings)

    def offer(
        self, functions: tuple[ToolSpec, ...], choice: str | McpChoice
    ) -> tuple[tuple[ToolSpec, ...], str]:
        """The tools and ``tool_choice`` of the LLM request: the function tools and every
        listed MCP tool (renamed ``label_name`` when a name is taken)."""
        taken = {spec.name for spec in functions}
        specs: list[ToolSpec] = []
        for listing in self._listings:
            server = listing.server
            for tool in listing.tools or []:
                name = tool.name if tool.name not in taken else f"{server.server_label}_{tool.name}"
                taken.add(name)
                self._index[name] = (server, tool)
                description = tool.description or f"A tool of {server.server_label}."
                specs.append(ToolSpec(name[:64], description, _compact(tool.input_schema)))
        if not isinstance(choice, McpChoice):
            return (*functions, *specs), choice
        chosen = [
            spec
            for spec in specs
            if self._index[spec.name][0].server_label == choice.server_label
            and choice.name in (None, self._index[spec.name][1].name)
        ]
        if len(chosen) == 1:
            return (*functions, *specs), chosen[0].name
        return (tuple(chosen), "required") if chosen else ((*functions, *specs), "auto")

    def owns(self, name: str) -> bool:
        return name in self._index

    async def call(self, run: ResponseRun, call: ToolCall) -> Item:
        """Run the model's call inside ``run`` (or ask the client to approve it); the
        ``mcp_call`` item."""
        server, tool = self._index[call.name]
        item = Item(
            "mcp_call",
            status="in_progress",
            name=tool.name,
            arguments="",
            mcp=McpDetails(server_label=server.server_label),
        )
        run._start_item(item)
        index = run._output_index(item)
        response_id = run.record.id
        for start in range(0, len(call.arguments), _ARGUMENT_CHUNK):
            delta = call.arguments[start : start + _ARGUMENT_CHUNK]
            item.arguments = (item.arguments or "") + delta
            run.emit(mcp_events.arguments_delta(response_id, item.id, index, delta))
        item.arguments = call.arguments
        run.emit(mcp_events.arguments_done(response_id, item.id, index, call.arguments))
        if server.needs_approval(tool.name, tool.read_only):
            run._finish_item(item, "completed")
            request = self._tools.request_approval(server, item, index)
            run._start_item(request)
            run._finish_item(request, "completed")
            return item
        run.emit(mcp_events.call("in_progress", item.id, index))
        if run.gate is not None:
            await run.gate()  # a speculative reply calls nothing until it is kept
        await run_call(server, item, self._tools.call_timeout_s)
        failed = item.mcp is not None and item.mcp.error is not None
        run.emit(mcp_events.call("failed" if failed else "completed", item.id, index))
        run._finish_item(item, "completed")
        return item

    def follow_up(self, request: LLMRequest, calls: list[Item]) -> LLMRequest | None:
        """The request that lets the model speak about the calls' results (none when there
        were no calls, or one waits for approval: the reply ends there)."""
        if not calls or any(c.mcp and c.mcp.approval_request_id for c in calls):
            return None
        self.rounds += 1
        messages = [*request.messages]
        for item in calls:
            messages.extend(mcp_call_messages(item))
        may_call = request.tool_choice == "auto" and self.rounds < MAX_ROUNDS
        return replace(request, messages=messages, tool_choice="auto" if may_call else "none")


def _compact(schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema without pydantic's ``title`` keys (tokens a small model reads)."""
    compact = {k: v for k, v in schema.items() if k != "title"}
    properties = compact.get("properties")
    if isinstance(properties, dict):
        compact["properties"] = {
            name: _compact(prop) if isinstance(prop, dict) else prop
            for name, prop in properties.items()
        }
    return compact


def mcp_call_messages(item: Item) -> list[dict[str, Any]]:
    """What the model sees of an ``mcp_call`` item: the call and its result (listings and
    approvals show through the calls they belong to)."""
    details = item.mcp or McpDetails()
    if item.output is not None:
        result = item.output
    elif details.error is not None:
        result = f"Error: {details.error.message}"
    elif details.approval_request_id is None or details.approve:
        result = "The call returned nothing."
    elif details.approve is None:
        result = "This call is waiting for the user's approval; it has not run."
    else:
        reason = f" ({details.reason})" if details.reason else ""
        result = f"The user denied this call{reason}; it did not run."
    return [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": item.id,
                    "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments or "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": item.id, "content": result},
    ]
