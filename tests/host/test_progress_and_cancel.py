"""Progress from a child reaches the host's client, and a client's cancellation reaches the
child, over stdio and over Streamable HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import (
    fixture_child,
    host_stdio_parameters,
    http_host,
    poll_until,
    write_layout,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def connect(transport: str, tmp_path: Path, cancel_log: Path) -> AsyncIterator[Client]:
    environment = {"AIOS_TEST_CANCEL_LOG": str(cancel_log)}
    layout = write_layout(
        tmp_path,
        [
            fixture_child("viahttp", transport="http", env=environment),
            fixture_child("viastdio", env=environment),
        ],
    )
    home = tmp_path / "home"
    if transport == "stdio":
        async with Client(host_stdio_parameters(layout, home), mode="legacy") as client:
            yield client
        return
    with http_host(layout, home) as host:
        async with httpx2.AsyncClient(headers=host.headers(), timeout=30) as http:
            async with Client(streamable_http_client(host.url, http_client=http)) as client:
                yield client


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("child", ["viahttp", "viastdio"])
async def test_progress_of_a_long_tool_reaches_the_client_in_order(
    transport: str, child: str, tmp_path: Path
) -> None:
    received: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append((progress, total))

    async with connect(transport, tmp_path, tmp_path / "cancelled.log") as client:
        result = await client.call_tool(
            f"{child}_slow_count", {"steps": 4, "delay_s": 0.01}, progress_callback=on_progress
        )
    assert not result.is_error
    assert received == [(1.0, 4.0), (2.0, 4.0), (3.0, 4.0), (4.0, 4.0)]


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("child", ["viahttp", "viastdio"])
async def test_a_cancelled_call_is_cancelled_in_the_child(
    transport: str, child: str, tmp_path: Path
) -> None:
    """The client gives up on the call; the child's tool sees the cancellation (it writes the
    marker to the cancel log) and the session keeps working."""
    cancel_log = tmp_path / "cancelled.log"
    marker = f"{transport}-{child}"
    async with connect(transport, tmp_path, cancel_log) as client:
        with anyio.move_on_after(1.0):
            await client.call_tool(f"{child}_wait_for_cancel", {"marker": marker})

        async def cancelled_in_child() -> bool | None:
            return (cancel_log.exists() and marker in cancel_log.read_text()) or None

        await poll_until(cancelled_in_child)
        after = await client.call_tool(f"{child}_add", {"a": 1, "b": 1})
    assert after.structured_content == {"result": 2}
