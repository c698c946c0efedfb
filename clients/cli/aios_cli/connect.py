"""Open an MCP session to the chosen host, turning every way that can fail into a ``CliError``
that says what happened and what to do (exit code 2, no traceback).

Only the handshake is guarded here: once connected, the commands map request errors themselves.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Final

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import REQUEST_TIMEOUT, Implementation

from aios_cli.errors import CliError, find_cli_error, leaves
from aios_cli.target import HttpTarget, SpawnTarget, Target

__all__ = ["connect"]

HTTP_CONNECT_TIMEOUT_S: Final = 10.0
SPAWN_LOG_TAIL_CHARS: Final = 2000
CLIENT_INFO: Final = Implementation(name="aios-cli", version="0.1.0")

# What a failed handshake raises, bare or inside exception groups from the client's task groups.
_CONNECT_ERRORS: Final = (BaseExceptionGroup, MCPError, OSError, httpx2.HTTPError)


@asynccontextmanager
async def connect(target: Target, timeout_s: float) -> AsyncIterator[Client]:
    """A connected client; every request (the handshake too) waits at most ``timeout_s``.

    Raises:
        CliError: the host cannot be reached, rejects us, or dies before answering.
    """
    assert timeout_s > 0, timeout_s
    if isinstance(target, HttpTarget):
        async with _connect_http(target, timeout_s) as client:
            yield client
    else:
        async with _connect_spawned(target, timeout_s) as client:
            yield client


@asynccontextmanager
async def _connect_http(target: HttpTarget, timeout_s: float) -> AsyncIterator[Client]:
    # The SDK reports any HTTP error status as one generic message; keep the status to explain.
    statuses: list[int] = []

    async def remember_status(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            statuses.append(response.status_code)

    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(HTTP_CONNECT_TIMEOUT_S, read=timeout_s),
        event_hooks={"response": [remember_status]},
    )
    transport = streamable_http_client(target.url, http_client=http)
    client = Client(transport, read_timeout_seconds=timeout_s, client_info=CLIENT_INFO)
    connected = False
    try:
        async with http, client:
            connected = True
            yield client
    except _CONNECT_ERRORS as error:
        if find_cli_error(error) is not None:
            raise
        # Once connected, the transport fails its task group (not the request) when the host
        # goes away mid-command.
        failure = (
            _lost_connection(target, error)
            if connected
            else _http_failure(target, error, statuses, timeout_s)
        )
        if failure is None:
            raise
        raise failure from None


def _http_failure(
    target: HttpTarget, error: BaseException, statuses: list[int], timeout_s: float
) -> CliError | None:
    found = leaves(error)
    where = f"No AIOS host at {target.url}"
    if any(isinstance(leaf, httpx2.ConnectError) for leaf in found):
        if target.origin.endswith(".json"):
            return CliError(
                f"{where} (named by {target.origin}): connection refused. The host that wrote "
                "it is gone: start it again with `aios-host --transport http`, delete the file, "
                "or pass --spawn."
            )
        return CliError(
            f"{where}: connection refused. Start one with `aios-host --transport http` or drop "
            "--url to spawn one."
        )
    if any(_is_timeout(leaf) for leaf in found):
        return CliError(
            f"The AIOS host at {target.url} did not answer within {timeout_s:g} s. "
            "Check that it runs (`aios-host --transport http`) or raise --timeout."
        )
    if statuses:
        return _status_failure(target, statuses[-1])
    problem = next((leaf for leaf in found if isinstance(leaf, httpx2.HTTPError | MCPError)), None)
    if problem is None:
        return None
    return CliError(f"Cannot talk MCP to {target.url}: {problem}.")


def _lost_connection(target: HttpTarget, error: BaseException) -> CliError | None:
    problem = next(
        (leaf for leaf in leaves(error) if isinstance(leaf, httpx2.TransportError)), None
    )
    if problem is None:
        return None
    return CliError(
        f"Lost the connection to the AIOS host at {target.url} ({problem}). It may have "
        "stopped: `aios status` shows whether one runs."
    )


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, MCPError):
        return error.code == REQUEST_TIMEOUT
    return isinstance(error, httpx2.TimeoutException)


def _status_failure(target: HttpTarget, status: int) -> CliError:
    url = target.url
    if status == 401 and target.token is None:
        return CliError(
            f"The AIOS host at {url} requires a token (HTTP 401). Pass --token or set "
            f"AIOS_TOKEN; the host writes it to {target.home / 'host.json'}."
        )
    if status == 401:
        return CliError(
            f"The AIOS host at {url} rejected the token from {_token_origin(target)} (HTTP 401). "
            f"Use the token in {target.home / 'host.json'} (or the host's AIOS_AUTH_TOKEN)."
        )
    if status == 404:
        return CliError(
            f"No MCP endpoint at {url} (HTTP 404). The AIOS host serves Streamable HTTP at "
            "/mcp, e.g. http://127.0.0.1:8765/mcp."
        )
    if status in (403, 421):
        return CliError(
            f"The host at {url} refused this address (HTTP {status}, Host/Origin check). "
            "Connect through 127.0.0.1 or localhost, or add it to the host's allowed_hosts."
        )
    return CliError(f"The host at {url} answered HTTP {status} to the MCP handshake.")


def _token_origin(target: HttpTarget) -> str:
    return target.origin if target.origin.endswith(".json") else "--token / AIOS_TOKEN"


@asynccontextmanager
async def _connect_spawned(target: SpawnTarget, timeout_s: float) -> AsyncIterator[Client]:
    parameters = StdioServerParameters(
        command=target.command, args=list(target.args), env=dict(target.environment)
    )
    # The host's log goes to a scratch file, shown only when the host fails to start.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        transport = stdio_client(parameters, errlog=log)
        client = Client(transport, read_timeout_seconds=timeout_s, client_info=CLIENT_INFO)
        connected = False
        try:
            async with client:
                connected = True
                yield client
        except _CONNECT_ERRORS as error:
            found = leaves(error)
            # After the handshake a lost host fails the request (connection closed), which the
            # commands report themselves.
            if connected or not any(isinstance(leaf, MCPError | OSError) for leaf in found):
                raise
            tail = await anyio.to_thread.run_sync(_tail, log)
            raise _spawn_failure(target, found, tail, timeout_s) from None


def _tail(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    text = log.read().strip()
    return text[-SPAWN_LOG_TAIL_CHARS:]


def _spawn_failure(
    target: SpawnTarget, found: list[BaseException], tail: str, timeout_s: float
) -> CliError:
    command = " ".join(["python", *target.args])
    said = f" It said:\n{tail}" if tail else ""
    if any(_is_timeout(leaf) for leaf in found):
        return CliError(
            f"The spawned host (`{command}`) did not answer within {timeout_s:g} s; it starts "
            f"its child servers first. Raise --timeout or check the layout.{said}"
        )
    launch = next((leaf for leaf in found if isinstance(leaf, OSError)), None)
    if launch is not None:
        return CliError(f"Cannot start the host (`{command}`): {launch}.")
    return CliError(f"The spawned host (`{command}`) exited before answering.{said}")
