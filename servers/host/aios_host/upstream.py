"""The host's side facing its own clients: who is connected, which request is in flight on
which child, who subscribed to what; and the routing of what children send back.

Children speak to the host over one multiplexed session each, so a child's log message,
sampling or elicitation request does not say which upstream request caused it. It goes to the
most recent upstream call still in flight on that child: exact when calls to a child do not
overlap, a best guess when they do (the protocol has no request correlation there).
Progress needs no guess: each forwarded call carries its own progress callback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    SubscriptionBus,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import BaseModel

from aios_host.catalog import ResourceRoute

__all__ = ["Upstream"]

ResultT = TypeVar("ResultT", bound=BaseModel)

logger = logging.getLogger(__name__)

_LOG_LEVELS: Final = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
_LOG_LEVEL_META_KEY: Final = "io.modelcontextprotocol/logLevel"
_UPSTREAM_REQUEST_TIMEOUT_S: Final = 600.0
MODERN_VERSION: Final = "2026-07-28"


class Upstream:
    """Registry of upstream connections and in-flight forwarded requests (owned by the host's
    lifespan; no global state)."""

    def __init__(
        self, on_catalog_changed: Callable[[str], Awaitable[None]], bus: SubscriptionBus
    ) -> None:
        self._on_catalog_changed = on_catalog_changed
        self._bus = bus
        self._sessions: dict[int, ServerSession] = {}
        self._levels: dict[int, str] = {}
        self._inflight: dict[str, list[ServerRequestContext[Any, Any]]] = {}
        self._subscriptions: dict[str, set[int]] = {}
        self._public_uris: dict[tuple[str, str], str] = {}

    # ---- connections ----------------------------------------------------------------------

    @staticmethod
    def _connection_key(session: ServerSession) -> int:
        # ServerSession is a per-request proxy; the connection behind it is the stable identity.
        return id(session._connection)  # pyright: ignore[reportPrivateUsage]

    def remember(self, ctx: ServerRequestContext[Any, Any]) -> int:
        """Note the client's connection; handshake-era ones get standalone notifications
        (2026-07-28 clients get theirs on their subscriptions/listen streams instead)."""
        key = self._connection_key(ctx.session)
        if ctx.protocol_version < MODERN_VERSION:
            self._sessions[key] = ctx.session
        return key

    def set_level(self, ctx: ServerRequestContext[Any, Any], level: str) -> None:
        self._levels[self.remember(ctx)] = level

    @contextmanager
    def in_flight(self, child: str, ctx: ServerRequestContext[Any, Any]) -> Iterator[None]:
        self.remember(ctx)
        stack = self._inflight.setdefault(child, [])
        stack.append(ctx)
        try:
            yield
        finally:
            stack.remove(ctx)

    def _current(self, child: str) -> ServerRequestContext[Any, Any] | None:
        stack = self._inflight.get(child)
        return stack[-1] if stack else None

    # ---- subscriptions --------------------------------------------------------------------

    def subscribe(
        self, ctx: ServerRequestContext[Any, Any], uri: str, route: ResourceRoute
    ) -> bool:
        """Record the subscription; True when it is the first for ``uri`` (subscribe the child).
        The child reports updates under its own URI, so remember how to map it back."""
        self._public_uris[(route.source, route.child_uri)] = uri
        subscribers = self._subscriptions.setdefault(uri, set())
        first = not subscribers
        subscribers.add(self.remember(ctx))
        return first

    def unsubscribe(self, ctx: ServerRequestContext[Any, Any], uri: str) -> bool:
        """Drop the subscription; True when none is left (unsubscribe the child)."""
        subscribers = self._subscriptions.get(uri, set())
        subscribers.discard(self.remember(ctx))
        if subscribers:
            return False
        self._subscriptions.pop(uri, None)
        return True

    # ---- ChildHooks -----------------------------------------------------------------------

    async def catalog_changed(self, child: str) -> None:
        await self._on_catalog_changed(child)

    async def broadcast_list_changed(self) -> None:
        """Tell every connected client that tools, prompts and resources may have changed."""
        for event in (ToolsListChanged(), PromptsListChanged(), ResourcesListChanged()):
            await self._bus.publish(event)
        for key, session in list(self._sessions.items()):
            try:
                await session.send_tool_list_changed()
                await session.send_prompt_list_changed()
                await session.send_resource_list_changed()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, MCPError, OSError):
                self._forget(key)

    async def resource_updated(self, child: str, child_uri: str) -> None:
        uri = self._public_uris.get((child, child_uri), child_uri)
        await self._bus.publish(ResourceUpdated(uri))
        for key in list(self._subscriptions.get(uri, ())):
            session = self._sessions.get(key)
            if session is None:
                continue
            try:
                await session.send_resource_updated(uri)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, MCPError, OSError):
                self._forget(key)

    def _forget(self, key: int) -> None:
        self._sessions.pop(key, None)
        self._levels.pop(key, None)
        for subscribers in self._subscriptions.values():
            subscribers.discard(key)

    async def log(self, child: str, params: types.LoggingMessageNotificationParams) -> None:
        ctx = self._current(child)
        if ctx is None:
            logger.info("child.log", extra={"child": child, "level": params.level})
            return
        if not self._wants(ctx, params.level):
            return
        notification = types.LoggingMessageNotification(params=params)
        try:
            await ctx.session.send_notification(notification, related_request_id=ctx.request_id)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, MCPError, OSError):
            logger.debug("upstream.log_dropped", extra={"child": child})

    def _wants(self, ctx: ServerRequestContext[Any, Any], level: str) -> bool:
        threshold: object
        if ctx.protocol_version >= MODERN_VERSION:
            # Modern clients opt in per request, in _meta.
            threshold = (ctx.meta or {}).get(_LOG_LEVEL_META_KEY)
            if threshold is None:
                return False
        else:
            threshold = self._levels.get(self._connection_key(ctx.session), "debug")
        if threshold not in _LOG_LEVELS or level not in _LOG_LEVELS:
            return True
        return _LOG_LEVELS.index(level) >= _LOG_LEVELS.index(str(threshold))

    async def sampling(
        self, child: str, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        ctx = self._current(child)
        if ctx is None or not ctx.session.can_send_request:
            return _no_client(child, "sampling")
        result_type: type[types.CreateMessageResult] | type[types.CreateMessageResultWithTools]
        result_type = (
            types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        )
        return await self._ask(ctx, types.CreateMessageRequest(params=params), result_type)

    async def elicitation(
        self, child: str, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        ctx = self._current(child)
        if ctx is None or not ctx.session.can_send_request:
            return _no_client(child, "elicitation")
        return await self._ask(ctx, types.ElicitRequest(params=params), types.ElicitResult)

    async def list_roots(self, child: str) -> types.ListRootsResult | types.ErrorData:
        ctx = self._current(child)
        if ctx is None or not ctx.session.can_send_request:
            return types.ListRootsResult(roots=[])
        return await self._ask(ctx, types.ListRootsRequest(), types.ListRootsResult)

    async def _ask(
        self,
        ctx: ServerRequestContext[Any, Any],
        request: types.ServerRequest,
        result_type: type[ResultT],
    ) -> ResultT | types.ErrorData:
        try:
            return await ctx.session.send_request(
                request,
                result_type,
                request_read_timeout_seconds=_UPSTREAM_REQUEST_TIMEOUT_S,
                metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
            )
        except MCPError as error:
            return error.error
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            return types.ErrorData(code=types.INTERNAL_ERROR, message="The client disconnected.")


def _no_client(child: str, what: str) -> types.ErrorData:
    return types.ErrorData(
        code=types.INVALID_REQUEST,
        message=f"Server {child!r} asked for {what}, but no client request that could answer "
        "it is in flight through the host.",
    )
