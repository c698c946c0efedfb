"""Progress from a child reaches the host's client, and a client's cancellation reaches the
child, over stdio and over Streamable HTTP."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.helpers import (
    connect_host,
    fixture_child,
    poll_until,
    write_layout,
)

pytestmark = pytest.mark.anyio


def connect(
    transport: str, tmp_path: Path, cancel_log: Path
) -> AbstractAsyncContextManager[Client]:
    environment = {"AIOS_TEST_CANCEL_LOG": str(cancel_log)}
    layout = write_layout(
        tmp_path,
        [
            fixture_child("viahttp", transport="http", env=environment),
            fixture_child("viastdio", env=environment),
        ],
    )
    return connect_host(transport, layout, tmp_path / "home")


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
