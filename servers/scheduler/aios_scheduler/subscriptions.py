"""``resources/subscribe`` for the scheduler's resources (spec section 5): after each commit,
``notifications/resources/updated`` goes to every session subscribed to a changed URI (job
transitions, new pipeline events, group status, clients, evaluations)."""

from __future__ import annotations

import logging
from typing import Any, Final

import anyio
import mcp_types as types
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession

from aios_scheduler.work import Work

__all__ = ["Subscriptions"]

logger = logging.getLogger(__name__)

PENDING_URIS_MAX: Final = 10_000
SUBSCRIPTIONS_MAX: Final = 100_000


class Subscriptions:
    """Who subscribed to what, and the delivery task that tells them after each commit."""

    def __init__(self) -> None:
        self.sessions: dict[str, set[ServerSession]] = {}
        self._send: MemoryObjectSendStream[str] | None = None

    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        if sum(len(s) for s in self.sessions.values()) >= SUBSCRIPTIONS_MAX:
            logger.warning("subscriptions.full", extra={"limit": SUBSCRIPTIONS_MAX})
        else:
            self.sessions.setdefault(str(params.uri), set()).add(ctx.session)
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        self.sessions.get(str(params.uri), set()).discard(ctx.session)
        return types.EmptyResult()

    def committed(self, work: Work) -> None:
        """Service listener (runs after COMMIT): queue the changed URIs that someone watches."""
        if self._send is None:
            return
        for uri in sorted(work.uris):
            if uri in self.sessions:
                try:
                    self._send.send_nowait(uri)
                except (anyio.WouldBlock, anyio.ClosedResourceError):
                    logger.warning("subscriptions.dropped", extra={"uri": uri})

    async def deliver(self, *, task_status: TaskStatus[None]) -> None:
        """The delivery task of one server lifespan; owns the queue of changed URIs."""
        send, receive = anyio.create_memory_object_stream[str](PENDING_URIS_MAX)
        self._send = send
        task_status.started()
        try:
            await self._drain(send, receive)
        finally:
            self._send = None

    async def _drain(
        self, send: MemoryObjectSendStream[str], receive: MemoryObjectReceiveStream[str]
    ) -> None:
        async with send, receive:
            async for uri in receive:
                for session in list(self.sessions.get(uri, ())):
                    try:
                        await session.send_resource_updated(uri)
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        self.sessions[uri].discard(session)
