"""Serve any AIOS MCP server over stdio, Streamable HTTP (``/mcp``) or legacy SSE (``/sse``).

One function, :func:`serve`, so every server has the same flags and the same behaviour:

- HTTP serves ``/mcp`` (Streamable HTTP) and ``/sse`` + ``/messages/`` (legacy SSE) side by side,
  ``/healthz`` (public, for supervisors) and ``/metrics`` (Prometheus). With an ``auth_token``
  every MCP endpoint and ``/metrics`` answer 401 without ``Authorization: Bearer <token>``.
  Host and Origin headers are checked against the allow lists (DNS-rebinding protection).
- The server lifespan (databases, background loops) is entered once per process, shared by the
  Streamable HTTP sessions and the SSE connections.
- Once listening, the bound URL is written atomically to ``ready_file`` (port 0 picks a free
  port, so a parent process learns it without a race).
- SIGTERM and SIGINT shut down gracefully: uvicorn stops accepting and lets in-flight requests
  finish for ``shutdown_grace_s``; on stdio the serve loop is cancelled and the lifespan exits.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import uvicorn
from mcp.server import Server
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.runner import serve_dual_era_loop
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import (
    StreamableHTTPASGIApp,
    StreamableHTTPSessionManager,
)
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aios_shared.config import ServerSettings
from aios_shared.errors import ERROR_CODES, ErrorPayload
from aios_shared.telemetry import TRACE_META_KEY, ServerMetrics, new_trace_id, trace_id_var

__all__ = ["AiosRequestMiddleware", "StartupFailed", "build_http_app", "lowlevel", "serve"]

logger = logging.getLogger(__name__)

_MCP_PATH: Final = "/mcp"
_SSE_PATH: Final = "/sse"
_MESSAGES_PATH: Final = "/messages/"
_STDIN_TEARDOWN_S: Final = 0.5


def lowlevel(server: Server[Any] | MCPServer[Any]) -> Server[Any]:
    """The low-level ``Server`` behind an ``MCPServer`` (the SDK's own ``Client`` reaches it the
    same way; there is no public accessor in mcp 2.3)."""
    if isinstance(server, MCPServer):
        inner: Server[Any] = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
        return inner
    return server


def _error_code_for_text(text: str) -> str:
    if text.startswith("Unknown tool"):
        return "not_found"
    if "validation error" in text:
        return "invalid_argument"
    return "tool_failed"


def _structured_error(result: dict[str, Any]) -> dict[str, Any]:
    """Give an SDK-made error result (argument validation, unknown tool) the AIOS error shape,
    so every client can branch on ``structuredContent.code`` whoever produced the error."""
    structured = result.get("structuredContent")
    if isinstance(structured, dict) and structured.get("code") in ERROR_CODES:
        return result
    texts = [item.get("text", "") for item in result.get("content", []) if isinstance(item, dict)]
    text = " ".join(t for t in texts if isinstance(t, str)).strip() or "The tool failed."
    # Pydantic appends a documentation link to every validation error; it only adds noise.
    text = "\n".join(
        line for line in text.splitlines() if "For further information visit" not in line
    )
    payload = ErrorPayload.model_validate(
        {"code": _error_code_for_text(text), "message": text, "details": {}}
    )
    return {
        **result,
        "content": [{"type": "text", "text": f"{payload.code}: {text}"}],
        "structuredContent": payload.model_dump(mode="json"),
    }


class AiosRequestMiddleware:
    """Server middleware on every request: binds the trace id from ``_meta`` (or a fresh one),
    records metrics, and gives every tool error result the structured ``{code, message,
    details}`` shape."""

    def __init__(self, metrics: ServerMetrics | None) -> None:
        self._metrics = metrics

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        meta = ctx.params.get("_meta") if ctx.params else None
        incoming = meta.get(TRACE_META_KEY) if isinstance(meta, dict) else None
        token = trace_id_var.set(incoming if isinstance(incoming, str) else new_trace_id())
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call_next(ctx)
            outcome = "ok"
            if ctx.method == "tools/call" and isinstance(result, dict) and result.get("isError"):
                result = _structured_error(result)
                outcome = "tool_error"
                self._count_tool_error(ctx, result)
            return result
        finally:
            trace_id_var.reset(token)
            if self._metrics is not None and ctx.request_id is not None:
                self._metrics.observe(ctx.method, outcome, time.perf_counter() - started)

    def _count_tool_error(
        self, ctx: ServerRequestContext[Any, Any], result: dict[str, Any]
    ) -> None:
        if self._metrics is None:
            return
        name = ctx.params.get("name", "") if ctx.params else ""
        code = result["structuredContent"]["code"]
        self._metrics.tool_errors.labels(self._metrics.service, str(name), code).inc()


def install_middleware(server: Server[Any], metrics: ServerMetrics | None) -> None:
    """Put the AIOS middleware innermost-but-one, after the SDK's own telemetry middleware."""
    if not any(isinstance(item, AiosRequestMiddleware) for item in server.middleware):
        server.middleware.append(AiosRequestMiddleware(metrics))


class _BearerAuth:
    """ASGI guard: 401 unless ``Authorization: Bearer <token>`` matches, in constant time."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, presented = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(presented, self._token):
                logger.warning("auth.rejected", extra={"path": scope.get("path")})
                response = JSONResponse(
                    {
                        "error": "invalid_token",
                        "error_description": "Authentication required: send "
                        "'Authorization: Bearer <token>'.",
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _guard(app: ASGIApp, token: str | None) -> ASGIApp:
    return app if token is None else _BearerAuth(app, token)


@dataclass
class _SharedLifespan:
    """Enter the server's lifespan once and hand the same state to every transport session."""

    server: Server[Any]
    state: Any = None

    @contextlib.asynccontextmanager
    async def entered(self) -> AsyncIterator[None]:
        original = self.server.lifespan
        async with original(self.server) as state:
            self.state = state

            @contextlib.asynccontextmanager
            async def reuse(_: Server[Any]) -> AsyncIterator[Any]:
                yield state

            self.server.lifespan = reuse
            try:
                yield
            finally:
                self.server.lifespan = original


def build_http_app(
    server: Server[Any] | MCPServer[Any],
    settings: ServerSettings,
    *,
    metrics: ServerMetrics | None = None,
    health: Callable[[], dict[str, Any]] | None = None,
) -> Starlette:
    """The Starlette app of one server: ``/mcp``, ``/sse``, ``/messages/``, ``/healthz``,
    ``/metrics``. ``health`` may add fields to the health document."""
    inner = lowlevel(server)
    metrics = metrics or ServerMetrics(service=inner.name)
    install_middleware(inner, metrics)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.allowed_hosts,
        allowed_origins=settings.allowed_origins,
    )
    manager = StreamableHTTPSessionManager(
        app=inner,
        security_settings=security,
        max_request_body_size=settings.request_body_bytes_max,
    )
    sse = SseServerTransport(
        _MESSAGES_PATH,
        security_settings=security,
        max_request_body_size=settings.request_body_bytes_max,
    )
    shared = _SharedLifespan(inner)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None

    async def handle_sse(scope: Scope, receive: Receive, send: Send) -> None:
        async with sse.connect_sse(scope, receive, send) as (read_stream, write_stream):
            await serve_dual_era_loop(
                inner,
                read_stream,
                write_stream,
                lifespan_state=shared.state,
                init_options=inner.create_initialization_options(),
            )

    async def healthz(_: Request) -> Response:
        document: dict[str, Any] = {"status": "ok", "service": inner.name, "pid": os.getpid()}
        if health is not None:
            document.update(health())
        return JSONResponse(document)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with shared.entered(), manager.run():
            yield

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", _guard(_endpoint_app(metrics_endpoint), token), methods=["GET"]),
            Route(_MCP_PATH, _guard(StreamableHTTPASGIApp(manager), token)),
            Route(_SSE_PATH, _guard(handle_sse, token), methods=["GET"]),
            Mount(_MESSAGES_PATH, app=_guard(sse.handle_post_message, token)),
        ],
        lifespan=lifespan,
    )


def _endpoint_app(endpoint: Callable[[Request], Any]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)

    return app


class StartupFailed(RuntimeError):
    """The server's lifespan failed at start (uvicorn has logged why)."""


class _NotifyingServer(uvicorn.Server):
    """uvicorn server that sets an event once its sockets accept connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            # Set on failure too, so the waiter wakes and finds ``started`` false.
            self.listening.set()


def _ignore_signal(signum: int, frame: object) -> None:
    logger.debug("server.signal_after_shutdown", extra={"signal": signum})


def _write_ready_file(path: Path, url: str) -> None:
    """Atomic write: the reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
    partial.replace(path)


async def _serve_http(
    server: Server[Any] | MCPServer[Any],
    settings: ServerSettings,
    health: Callable[[], dict[str, Any]] | None,
    on_listening: Callable[[str], None] | None,
) -> None:
    app = build_http_app(server, settings, health=health)
    listener = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it a keep-alive client (every 2026-07-28
    # session) waits out the peer's delayed ACK on each response: 45 ms instead of 2 ms.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind((settings.host, settings.port))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
        lifespan="on",
    )
    uvicorn_server = _NotifyingServer(config)
    # uvicorn re-raises the stop signal once its graceful shutdown is done; the signal already
    # did its job, so let the process end normally (exit code 0) instead of dying by it.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _ignore_signal)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{port}{_MCP_PATH}"
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: uvicorn_server.serve(sockets=[listener]))
        await uvicorn_server.listening.wait()
        if not uvicorn_server.started:
            raise StartupFailed(f"{lowlevel(server).name} did not start; see the log above.")
        logger.info("server.listening", extra={"url": url, "service": lowlevel(server).name})
        if settings.ready_file is not None:
            _write_ready_file(settings.ready_file, url)
        if on_listening is not None:
            on_listening(url)


async def _serve_stdio(server: Server[Any] | MCPServer[Any]) -> None:
    inner = lowlevel(server)
    install_middleware(inner, None)
    stopped_by: list[str] = []
    async with anyio.create_task_group() as group:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for received in signals:
                    logger.info("server.stopping", extra={"signal": received.name})
                    stopped_by.append(received.name)
                    group.cancel_scope.cancel()
                    return

        group.start_soon(stop_on_signal)
        async with stdio_server() as (read_stream, write_stream):
            try:
                await inner.run(read_stream, write_stream, inner.create_initialization_options())
            finally:
                if stopped_by:
                    _exit_soon()
        group.cancel_scope.cancel()


def _exit_soon() -> None:
    """After a signal the lifespan has closed cleanly, but the SDK reads stdin in a worker thread
    that no cancellation can interrupt while the client keeps the pipe open; end the process
    once the remaining teardown had a moment."""
    logging.shutdown()
    timer = threading.Timer(_STDIN_TEARDOWN_S, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


async def serve(
    server: Server[Any] | MCPServer[Any],
    settings: ServerSettings,
    *,
    health: Callable[[], dict[str, Any]] | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve until the client goes away (stdio) or a signal arrives (HTTP/SSE).
    ``on_listening`` is called with the ``/mcp`` URL once the HTTP server accepts connections.
    """
    if settings.transport == "stdio":
        await _serve_stdio(server)
    else:
        await _serve_http(server, settings, health, on_listening)
