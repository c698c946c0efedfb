"""Supervision under real faults: kill -9 of a child mid-call, restarts, restart intensity."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage

from aios_shared.audit import AuditLog
from aios_shared.db import Database
from tests.helpers import fixture_child, host_stdio_parameters, poll_until, write_layout

pytestmark = pytest.mark.anyio


async def status_of(client: Client, name: str) -> dict[str, Any]:
    status = await client.call_tool("host_status", {})
    assert status.structured_content is not None
    children = {child["name"]: child for child in status.structured_content["children"]}
    child = children[name]
    assert isinstance(child, dict)
    return child


async def wait_for_state(
    client: Client, name: str, state: str, restarts: int | None = None
) -> dict[str, Any]:
    """Poll host_status until the child is in ``state`` (after ``restarts`` restarts)."""

    async def check() -> dict[str, Any] | None:
        child = await status_of(client, name)
        if child["state"] != state:
            return None
        return child if restarts is None or child["restarts_total"] == restarts else None

    return await poll_until(check)


async def wait_until_running(client: Client, name: str, restarts: int = 0) -> dict[str, Any]:
    return await wait_for_state(client, name, "running", restarts)


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_kill_9_of_a_child_mid_call_fails_fast_and_the_child_comes_back(
    transport: str, tmp_path: Path
) -> None:
    """The call in flight answers subsystem_unavailable within 2 s; the other child serves
    throughout; the killed child is restarted and serves again, and the client is told that
    the tool list may have changed."""
    layout = write_layout(
        tmp_path,
        [fixture_child("victim", transport=transport), fixture_child("bystander")],
    )
    notified: list[str] = []

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            notified.append(message.method)

    parameters = host_stdio_parameters(layout, tmp_path / "home")
    async with Client(parameters, mode="legacy", message_handler=on_message) as client:
        before = await wait_until_running(client, "victim")
        pid = (await client.call_tool("victim_pid", {})).structured_content
        assert pid is not None
        outcome: dict[str, Any] = {}

        returned = anyio.Event()

        async def long_call() -> None:
            outcome["result"] = await client.call_tool("victim_wait_for_cancel", {"marker": "m"})
            outcome["returned_at"] = time.monotonic()
            returned.set()

        async with anyio.create_task_group() as group:
            group.start_soon(long_call)
            await anyio.sleep(0.5)
            killed_at = time.monotonic()
            os.kill(pid["result"], signal.SIGKILL)
            with anyio.fail_after(2.0):
                await returned.wait()
            bystander = await client.call_tool("bystander_add", {"a": 20, "b": 22})

        after = await wait_until_running(client, "victim", restarts=1)
        again = await client.call_tool("victim_add", {"a": 1, "b": 2})

    result = outcome["result"]
    assert result.is_error
    assert result.structured_content["code"] == "subsystem_unavailable"
    assert result.structured_content["details"]["server"] == "victim"
    assert outcome["returned_at"] - killed_at < 2.0
    assert bystander.structured_content == {"result": 42}
    assert after["restarts_total"] == before["restarts_total"] + 1
    assert after["pid"] != pid["result"]
    assert again.structured_content == {"result": 3}
    assert "notifications/tools/list_changed" in notified


async def test_a_child_crashing_past_its_restart_intensity_is_marked_failed(tmp_path: Path) -> None:
    """With max_restarts=5 in a period, the sixth crash marks the child failed; its tools then
    answer subsystem_unavailable at once and the other child keeps serving."""
    layout = write_layout(
        tmp_path,
        [
            fixture_child(
                "crashy",
                max_restarts=5,
                restart_period_s=60,
                backoff_initial_s=0.01,
                backoff_max_s=0.05,
            ),
            fixture_child("steady"),
        ],
    )
    async with Client(host_stdio_parameters(layout, tmp_path / "home"), mode="legacy") as client:
        crashes = []
        for restarts in range(6):
            await wait_until_running(client, "crashy", restarts)
            crashes.append(await client.call_tool("crashy_crash", {}))
        child = await wait_for_state(client, "crashy", "failed")
        refused = await client.call_tool("crashy_add", {"a": 1, "b": 1})
        steady = await client.call_tool("steady_add", {"a": 1, "b": 1})
        resource = await client.read_resource("aios://host/status")

    assert all(crash.is_error for crash in crashes)
    assert {crash.structured_content["code"] for crash in crashes if crash.structured_content} == {
        "subsystem_unavailable"
    }
    assert child["restarts_total"] == 5
    assert "more than 5 restarts in 60 s" in child["detail"]
    assert refused.structured_content is not None
    assert refused.structured_content["code"] == "subsystem_unavailable"
    assert "has failed" in refused.structured_content["message"]
    assert steady.structured_content == {"result": 2}
    assert '"state": "failed"' in resource.contents[0].text  # type: ignore[union-attr]  # text resource
    async with Database.open(tmp_path / "home" / "host.db") as db:
        audit = AuditLog(db)
        verification = await audit.verify()
        entries = await audit.query()
    assert verification.ok
    actions = [(entry.action, entry.subject) for entry in entries]
    assert actions.count(("child.restarting", "crashy")) == 5
    assert ("child.failed", "crashy") in actions
    assert actions[0] == ("host.boot", "aios")


async def test_an_operator_restart_revives_a_failed_child(tmp_path: Path) -> None:
    layout = write_layout(tmp_path, [fixture_child("once", restart="temporary")])
    async with Client(host_stdio_parameters(layout, tmp_path / "home"), mode="legacy") as client:
        await client.call_tool("once_crash", {})
        await wait_for_state(client, "once", "stopped")
        restarted = await client.call_tool("host_restart_server", {"server": "once"})
        served = await client.call_tool("once_add", {"a": 2, "b": 2})
        unknown = await client.call_tool("host_restart_server", {"server": "ghost"})
    assert restarted.structured_content == {"server": "once", "state": "running"}
    assert served.structured_content == {"result": 4}
    assert unknown.structured_content is not None
    assert unknown.structured_content["code"] == "not_found"
