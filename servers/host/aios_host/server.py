"""The host's MCP surface, on the low-level ``Server``: list and forward everything the children
offer under their prefixes, plus the host's own status and restart tools.

Errors: a tool call always answers with a result (``is_error`` with ``{code, message,
details}``, never a traceback); list/read/get/complete requests answer JSON-RPC errors whose
``data`` carries the same ``{code, message, details}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar, cast

import mcp_types as types
from mcp import Client
from mcp.server import Server, ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.exceptions import MCPError

from aios_host.catalog import HOST_SOURCE, ResourceRoute
from aios_host.config import HostLayout, HostSettings
from aios_host.state import HOST_VERSION, HostState, running_host
from aios_shared.errors import (
    ERROR_CODES,
    AiosError,
    InvalidArgument,
    NotFound,
    ToolFailed,
    error_result,
    internal_error_result,
)
from aios_shared.telemetry import TRACE_META_KEY, current_trace_id

__all__ = ["HOST_STATUS_URI", "build_host_server"]

HOST_STATUS_URI: Final = "aios://host/status"
ResultT = TypeVar("ResultT")
Context = ServerRequestContext[HostState, Any]

_HOST_TOOLS: Final = [
    types.Tool(
        name="host_status",
        description="Show the AIOS host and each subsystem server it supervises: state "
        "(running, restarting, failed), pid, URL, restarts and tool count. Use it when a tool "
        "answers subsystem_unavailable.",
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
    ),
    types.Tool(
        name="host_restart_server",
        description="Restart one child server by name (operator action). A running server is "
        "stopped and brought back by its supervisor; a failed one gets a fresh restart budget.",
        input_schema={
            "type": "object",
            "properties": {"server": {"type": "string", "minLength": 1, "maxLength": 32}},
            "required": ["server"],
            "additionalProperties": False,
        },
    ),
]


def _protocol_error(error: AiosError) -> MCPError:
    code = (
        types.INVALID_PARAMS
        if isinstance(error, InvalidArgument | NotFound)
        else types.INTERNAL_ERROR
    )
    return MCPError(code, error.for_caller(), error.to_payload().model_dump(mode="json"))


def _structured_protocol_error(child: str, error: MCPError) -> MCPError:
    """A child's own JSON-RPC error, given the AIOS ``{code, message, details}`` data so every
    client can branch on it whichever server produced it."""
    data = error.data
    if isinstance(data, dict) and data.get("code") in ERROR_CODES:
        return error
    lowered = error.message.lower()
    kind: type[AiosError] = ToolFailed
    if "not found" in lowered or "unknown" in lowered:
        kind = NotFound
    elif error.code == types.INVALID_PARAMS:
        kind = InvalidArgument
    translated = kind(error.message, details={"server": child, "rpc_code": error.code})
    return MCPError(error.code, error.message, translated.to_payload().model_dump(mode="json"))


async def _on_child(
    ctx: Context, child_name: str, action: Callable[[Client], Awaitable[ResultT]]
) -> ResultT:
    """Run a non-tool request on a child, mapping a dead child to a JSON-RPC error."""
    state = ctx.lifespan_context
    child = state.child(child_name)
    with state.upstream.in_flight(child_name, ctx):
        try:
            async with child.forwarding() as client:
                return await action(client)
        except AiosError as error:
            raise _protocol_error(error) from error
        except MCPError as error:
            raise _structured_protocol_error(child_name, error) from error
    raise AssertionError("unreachable: forwarding() raises when cancelled")


async def _list_tools(
    ctx: Context, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    ctx.lifespan_context.upstream.remember(ctx)
    return types.ListToolsResult(
        tools=[routed.item for routed in ctx.lifespan_context.catalog.tools.values()]
    )


async def _call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
    state = ctx.lifespan_context
    state.upstream.remember(ctx)
    try:
        return await _route_tool_call(ctx, state, params)
    except AiosError as error:
        return error_result(error)
    except MCPError as error:
        return error_result(
            ToolFailed(
                f"The server behind {params.name} answered a protocol error: {error.message}"
            )
        )


async def _route_tool_call(
    ctx: Context, state: HostState, params: types.CallToolRequestParams
) -> types.CallToolResult:
    routed = state.catalog.tools.get(params.name)
    if routed is None:
        raise NotFound(
            f"Unknown tool {params.name!r}.",
            hint="Call tools/list for the tools this host offers (names are <server>_<tool>).",
        )
    arguments = params.arguments or {}
    size = len(json.dumps(arguments, separators=(",", ":")).encode())
    if size > state.settings.arguments_bytes_max:
        raise InvalidArgument(
            f"Arguments of {params.name} are {size} bytes; the limit is "
            f"{state.settings.arguments_bytes_max} bytes.",
            hint="Send large content by reference (a path or URI) instead.",
        )
    state.validate_arguments(params.name, routed.item, arguments)
    if routed.source == HOST_SOURCE:
        return await _host_tool(state, routed.original_name, arguments)
    child = state.child(routed.source)

    async def forward_progress(progress: float, total: float | None, message: str | None) -> None:
        await ctx.session.report_progress(progress, total, message)

    meta = cast(types.RequestParamsMeta, {TRACE_META_KEY: current_trace_id()})
    with state.upstream.in_flight(child.spec.name, ctx):
        return await child.call_tool(
            routed.original_name, arguments, progress=forward_progress, meta=meta
        )


async def _host_tool(
    state: HostState, name: str, arguments: dict[str, Any]
) -> types.CallToolResult:
    if name == "host_status":
        status = state.status().model_dump(mode="json")
    else:
        server = str(arguments["server"])
        status = {"server": server, "state": await state.restart_child(server)}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(status, indent=2))],
        structured_content=status,
    )


async def _list_resources(
    ctx: Context, params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    ctx.lifespan_context.upstream.remember(ctx)
    own = types.Resource(
        uri=HOST_STATUS_URI,
        name="host_status",
        description="The host and the state of every child server (JSON).",
        mime_type="application/json",
    )
    children = [routed.item for routed in ctx.lifespan_context.catalog.resources.values()]
    return types.ListResourcesResult(resources=[own, *children])


async def _list_templates(
    ctx: Context, params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(
        resource_templates=ctx.lifespan_context.catalog.public_templates()
    )


def _route(state: HostState, uri: str) -> ResourceRoute:
    route = state.catalog.route_uri(uri)
    if route is None:
        raise _protocol_error(
            NotFound(
                f"Resource not found: {uri}.",
                hint="Call resources/list or resources/templates/list for what is served.",
                details={"uri": uri},
            )
        )
    return route


async def _read_resource(
    ctx: Context, params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    state = ctx.lifespan_context
    uri = str(params.uri)
    if uri == HOST_STATUS_URI:
        text = state.status().model_dump_json(indent=2)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )
    route = _route(state, uri)

    async def read(client: Client) -> types.ReadResourceResult:
        result = await client.read_resource(route.child_uri)
        assert isinstance(result, types.ReadResourceResult), type(result)
        if route.child_uri == uri:
            return result
        # Contents name the URI the client asked for, not the child's own.
        contents = [
            item.model_copy(update={"uri": uri}) if str(item.uri) == route.child_uri else item
            for item in result.contents
        ]
        return result.model_copy(update={"contents": contents})

    return await _on_child(ctx, route.source, read)


async def _subscribe(ctx: Context, params: types.SubscribeRequestParams) -> types.EmptyResult:
    state = ctx.lifespan_context
    uri = str(params.uri)
    route = _route(state, uri)
    if state.upstream.subscribe(ctx, uri, route):
        await _subscribe_child(ctx, route)
    return types.EmptyResult()


async def _subscribe_child(ctx: Context, route: ResourceRoute) -> None:
    await _on_child(ctx, route.source, lambda client: client.subscribe_resource(route.child_uri))


async def _unsubscribe(ctx: Context, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    state = ctx.lifespan_context
    uri = str(params.uri)
    route = _route(state, uri)
    if state.upstream.unsubscribe(ctx, uri):
        await _on_child(
            ctx, route.source, lambda client: client.unsubscribe_resource(route.child_uri)
        )
    return types.EmptyResult()


async def _list_prompts(
    ctx: Context, params: types.PaginatedRequestParams | None
) -> types.ListPromptsResult:
    return types.ListPromptsResult(
        prompts=[routed.item for routed in ctx.lifespan_context.catalog.prompts.values()]
    )


async def _get_prompt(ctx: Context, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    routed = ctx.lifespan_context.catalog.prompts.get(params.name)
    if routed is None:
        raise _protocol_error(
            NotFound(f"Unknown prompt {params.name!r}.", hint="Call prompts/list for the prompts.")
        )

    async def get(client: Client) -> types.GetPromptResult:
        result = await client.get_prompt(routed.original_name, params.arguments)
        assert isinstance(result, types.GetPromptResult), type(result)
        return result

    return await _on_child(ctx, routed.source, get)


async def _complete(ctx: Context, params: types.CompleteRequestParams) -> types.CompleteResult:
    state = ctx.lifespan_context
    ref = params.ref
    if isinstance(ref, types.PromptReference):
        routed = state.catalog.prompts.get(ref.name)
        if routed is None:
            raise _protocol_error(NotFound(f"Unknown prompt {ref.name!r}."))
        owner: str = routed.source
        ref = ref.model_copy(update={"name": routed.original_name})
    else:
        route = state.catalog.route_template(ref.uri) or _route(state, ref.uri)
        owner = route.source
        ref = ref.model_copy(update={"uri": route.child_uri})
    argument = {"name": params.argument.name, "value": params.argument.value}
    context = params.context.arguments if params.context is not None else None
    forwarded_ref = ref
    return await _on_child(
        ctx,
        owner,
        lambda client: client.complete(forwarded_ref, argument, context_arguments=context),
    )


async def _set_level(ctx: Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
    ctx.lifespan_context.upstream.set_level(ctx, params.level)
    return types.EmptyResult()


def build_host_server(settings: HostSettings, layout: HostLayout) -> Server[HostState]:
    """The host as a low-level MCP server; its lifespan boots and supervises the children."""

    # Owned by this server object: 2026-07-28 clients' listen streams, fed by the host state.
    bus = InMemorySubscriptionBus()
    listen = ListenHandler(bus)

    @asynccontextmanager
    async def lifespan(_: Server[HostState]) -> AsyncIterator[HostState]:
        async with running_host(settings, layout, list(_HOST_TOOLS), bus) as state:
            try:
                yield state
            finally:
                listen.close()

    async def on_listen(
        ctx: Context, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """Subscribe the children to the resources a modern client listens for, then serve
        the stream from the host's bus."""
        for uri in params.notifications.resource_subscriptions or ():
            route = _route(ctx.lifespan_context, uri)
            if ctx.lifespan_context.upstream.subscribe(ctx, uri, route):
                await _subscribe_child(ctx, route)
        return await listen(ctx, params)

    server: Server[HostState] = Server(
        settings.name,
        version=HOST_VERSION,
        instructions="AIOS: an AI operating system. Tools are named <server>_<tool> "
        "(e.g. memory_save). host_status shows which subsystem servers are up.",
        lifespan=lifespan,
        on_list_tools=_list_tools,
        on_call_tool=_guarded_call_tool,
        on_list_resources=_list_resources,
        on_list_resource_templates=_list_templates,
        on_read_resource=_read_resource,
        on_subscribe_resource=_subscribe,
        on_unsubscribe_resource=_unsubscribe,
        on_list_prompts=_list_prompts,
        on_get_prompt=_get_prompt,
        on_completion=_complete,
        on_subscriptions_listen=on_listen,
    )
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _set_level)
    return server


async def _guarded_call_tool(
    ctx: Context, params: types.CallToolRequestParams
) -> types.CallToolResult:
    try:
        return await _call_tool(ctx, params)
    except Exception:  # noqa: BLE001 - the MCP boundary: log it, hide it from the client
        return internal_error_result(params.name)
