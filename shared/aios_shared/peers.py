"""MCP client pool for calls from one AIOS server to another (DESIGN.md sections 2-3).

A server never imports a peer's package; it calls the peer's tools over MCP through this pool:

    async with PeerPool.open(peers_from_environment(os.environ)) as peers:
        saved = await peers.call("memory", "save", {...}, idempotency_key=key)

- One long-lived, multiplexed session per peer (Streamable HTTP with the per-boot bearer
  token the host hands out in ``AIOS_PEERS``), opened on first use, reopened after a failure.
- Every call has a deadline. A peer that is not configured, unreachable, or whose circuit is
  open answers ``SubsystemUnavailable`` at once; a peer's typed error result is re-raised as the
  same ``AiosError`` kind.
- Retries: a call that carries an idempotency key is retried (bounded, with backoff) after a
  transport failure, since the peer deduplicates it; a call without one is retried only when it
  never reached the peer (the connection could not be opened).
- Circuit breaking: after ``failures_to_open`` consecutive transport failures the peer is
  skipped for ``open_s`` seconds, then one probe call is let through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, cast

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aios_shared.errors import (
    ErrorPayload,
    InvalidArgument,
    SubsystemUnavailable,
    Timeout,
    ToolFailed,
    error_from_payload,
)
from aios_shared.telemetry import TRACE_META_KEY, current_trace_id, new_trace_id

__all__ = [
    "IDEMPOTENCY_META_KEY",
    "PeerAddress",
    "PeerLimits",
    "PeerPool",
    "peers_from_environment",
]

logger = logging.getLogger(__name__)

IDEMPOTENCY_META_KEY: Final = "io.aios/idempotency-key"


class PeerAddress(BaseModel):
    """Where a peer listens and the bearer token it accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://")
    token: str = Field(min_length=1)


class PeerLimits(BaseModel):
    """Deadlines and bounds of peer calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect_timeout_s: float = Field(5.0, gt=0)
    call_timeout_s: float = Field(30.0, gt=0)
    retries_max: int = Field(3, ge=0, le=10)
    backoff_initial_s: float = Field(0.1, ge=0)
    backoff_max_s: float = Field(2.0, ge=0)
    failures_to_open: int = Field(
        5, gt=0, description="Consecutive failures that open the circuit."
    )
    open_s: float = Field(5.0, gt=0, description="How long an open circuit skips the peer.")


def peers_from_environment(environ: Mapping[str, str]) -> dict[str, PeerAddress]:
    """Parse ``AIOS_PEERS`` (JSON ``{name: {url, token}}``, set by the host).

    Raises:
        InvalidArgument: the variable is not such a JSON object.
    """
    raw = environ.get("AIOS_PEERS")
    if not raw:
        return {}
    try:
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise TypeError("not an object")
        return {str(name): PeerAddress.model_validate(value) for name, value in document.items()}
    except (json.JSONDecodeError, TypeError, ValidationError) as error:
        raise InvalidArgument(
            f"AIOS_PEERS is not a JSON object of {{name: {{url, token}}}}: {error}."
        ) from error


class _PeerTransportError(Exception):
    """The peer could not be reached or the stream broke (not a peer-side tool error)."""

    def __init__(self, message: str, *, reached: bool) -> None:
        super().__init__(message)
        self.reached = reached


@dataclass
class _Peer:
    name: str
    address: PeerAddress
    client: Client | None = None
    closed: anyio.Event = field(default_factory=anyio.Event)
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    consecutive_failures: int = 0
    open_until: float = 0.0


class PeerPool:
    """Sessions to the peers of one server; owned by that server's lifespan."""

    def __init__(
        self, addresses: Mapping[str, PeerAddress], limits: PeerLimits, group: TaskGroup
    ) -> None:
        self._peers = {name: _Peer(name, address) for name, address in addresses.items()}
        self._limits = limits
        self._group = group

    @classmethod
    @asynccontextmanager
    async def open(
        cls, addresses: Mapping[str, PeerAddress], limits: PeerLimits | None = None
    ) -> AsyncIterator[PeerPool]:
        async with anyio.create_task_group() as group:
            pool = cls(addresses, limits or PeerLimits(), group)
            try:
                yield pool
            finally:
                for peer in pool._peers.values():
                    peer.closed.set()

    def configured(self, name: str) -> bool:
        return name in self._peers

    async def call(
        self,
        peer_name: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Call ``tool`` on the peer and return its structured content (or ``{"text": ...}``
        for a text-only result).

        Raises:
            SubsystemUnavailable: the peer is not configured, down, or its circuit is open.
            Timeout: no answer within the deadline.
            AiosError: the peer's own typed error (same kind as the peer raised).
        """
        peer = self._peer(peer_name)
        deadline_s = timeout_s or self._limits.call_timeout_s
        attempts = self._limits.retries_max + 1
        delay = self._limits.backoff_initial_s
        for attempt in range(1, attempts + 1):
            self._check_circuit(peer)
            try:
                with anyio.fail_after(deadline_s):
                    result = await self._call_once(peer, tool, arguments, idempotency_key)
            except TimeoutError as error:
                raise Timeout(
                    f"Peer {peer_name!r} did not answer {tool} within {deadline_s:g} s.",
                    hint="Retry later; the peer may be overloaded.",
                    details={"peer": peer_name, "tool": tool},
                ) from error
            except _PeerTransportError as error:
                self._record_failure(peer)
                retryable = idempotency_key is not None or not error.reached
                if attempt == attempts or not retryable:
                    raise self._unavailable(peer, str(error)) from error
                logger.warning(
                    "peer.retry", extra={"peer": peer_name, "tool": tool, "attempt": attempt}
                )
                await anyio.sleep(delay)
                delay = min(self._limits.backoff_max_s, max(delay * 2, 0.01))
                continue
            peer.consecutive_failures = 0
            return _unwrap(peer_name, tool, result)
        raise AssertionError("unreachable: the loop returns or raises")

    # ---- internals ------------------------------------------------------------------------

    def _peer(self, name: str) -> _Peer:
        peer = self._peers.get(name)
        if peer is None:
            raise SubsystemUnavailable(
                f"The {name!r} server is not available to this server.",
                hint=f"Run it under the AIOS host, which connects peers (known: "
                f"{', '.join(self._peers) or 'none'}).",
                details={"peer": name},
            )
        return peer

    def _check_circuit(self, peer: _Peer) -> None:
        if peer.open_until > anyio.current_time():
            raise self._unavailable(peer, "circuit open after repeated failures")

    def _record_failure(self, peer: _Peer) -> None:
        peer.consecutive_failures += 1
        if peer.consecutive_failures >= self._limits.failures_to_open:
            peer.open_until = anyio.current_time() + self._limits.open_s
            logger.error("peer.circuit_open", extra={"peer": peer.name})

    def _unavailable(self, peer: _Peer, why: str) -> SubsystemUnavailable:
        return SubsystemUnavailable(
            f"The {peer.name!r} server is unavailable ({why}).",
            hint="Retry in a few seconds; `aios status` shows the servers' states.",
            details={"peer": peer.name},
        )

    async def _call_once(
        self, peer: _Peer, tool: str, arguments: dict[str, Any], idempotency_key: str | None
    ) -> types.CallToolResult:
        client = await self._session(peer)
        meta: dict[str, Any] = {TRACE_META_KEY: current_trace_id() or new_trace_id()}
        if idempotency_key is not None:
            meta[IDEMPOTENCY_META_KEY] = idempotency_key
        try:
            return await client.call_tool(tool, arguments, meta=cast(types.RequestParamsMeta, meta))
        except MCPError as error:
            if error.code == types.CONNECTION_CLOSED:
                await self._drop(peer, client)
                raise _PeerTransportError(error.message, reached=True) from error
            raise ToolFailed(
                f"Peer {peer.name!r} refused {tool}: {error.message}",
                details={"peer": peer.name, "tool": tool, "rpc_code": error.code},
            ) from error
        except (httpx2.HTTPError, OSError, anyio.BrokenResourceError) as error:
            await self._drop(peer, client)
            raise _PeerTransportError(str(error) or type(error).__name__, reached=True) from error

    async def _session(self, peer: _Peer) -> Client:
        async with peer.lock:
            if peer.client is not None:
                return peer.client
            peer.closed = anyio.Event()
            try:
                with anyio.fail_after(self._limits.connect_timeout_s):
                    client: Client = await self._group.start(self._hold, peer)
            except TimeoutError as error:
                raise _PeerTransportError(
                    f"cannot connect to {peer.address.url}: no answer", reached=False
                ) from error
            peer.client = client
            return client

    async def _hold(self, peer: _Peer, *, task_status: TaskStatus[Client]) -> None:
        """Own one peer session in a task of the pool, so it opens and closes in one task."""
        started = False
        try:
            async with AsyncExitStack() as stack:
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers={"Authorization": f"Bearer {peer.address.token}"},
                        timeout=httpx2.Timeout(self._limits.connect_timeout_s, read=None),
                    )
                )
                client = Client(
                    streamable_http_client(peer.address.url, http_client=http),
                    mode="legacy",
                    client_info=types.Implementation(name="aios-peer", version="0.1.0"),
                )
                await stack.enter_async_context(client)
                task_status.started(client)
                started = True
                await peer.closed.wait()
        except Exception as error:  # a broken peer session must not take its server down
            if not started:
                raise _PeerTransportError(
                    f"cannot connect to {peer.address.url}: {_leaf(error)}", reached=False
                ) from error
            logger.warning("peer.session_lost", extra={"peer": peer.name}, exc_info=True)
            peer.client = None

    async def _drop(self, peer: _Peer, client: Client) -> None:
        async with peer.lock:
            if peer.client is client:
                peer.client = None
                peer.closed.set()


def _leaf(error: BaseException) -> str:
    """The innermost message of an exception (group), for a one-line reason."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return str(error) or type(error).__name__


def _unwrap(peer: str, tool: str, result: types.CallToolResult) -> dict[str, Any]:
    structured = result.structured_content
    if result.is_error:
        if isinstance(structured, dict):
            try:
                ErrorPayload.model_validate(structured)
            except ValidationError:
                pass
            else:
                raise error_from_payload(structured)
        text = " ".join(item.text for item in result.content if isinstance(item, types.TextContent))
        raise ToolFailed(f"Peer {peer!r} failed {tool}: {text or 'no message'}")
    if isinstance(structured, dict):
        return structured
    text = "".join(item.text for item in result.content if isinstance(item, types.TextContent))
    return {"text": text}
