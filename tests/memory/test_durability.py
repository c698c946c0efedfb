"""Durability (spec/memory.md section 6, test 28): the real server process is killed with
SIGKILL during a write burst; after a restart every acknowledged write is there, the batch in
flight is wholly present or absent, and the SQLite file passes its integrity checks."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.helpers import REPO, stop, wait_for_file

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@asynccontextmanager
async def memory_process(home: Path) -> AsyncIterator[tuple[Client, subprocess.Popen[bytes]]]:
    """The memory server as a real subprocess on loopback Streamable HTTP."""
    ready = home / f"ready-{os.urandom(4).hex()}.json"
    log = (home / "server.log").open("ab")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "aios_memory", "--transport", "http", "--port", "0"),
            *("--ready-file", str(ready), "--home", str(home)),
        ],
        cwd=str(REPO),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for_file(ready, process, 60, home / "server.log")
        url = json.loads(ready.read_text(encoding="utf-8"))["url"]
        async with httpx2.AsyncClient(timeout=60) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode="legacy") as client:
                yield client, process
    finally:
        stop(process)
        log.close()


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result
    content = result.structured_content
    assert isinstance(content, dict)
    return content


async def write_then_kill(
    home: Path,
    acknowledged: dict[str, tuple[int, str, dict[str, int]]],
    edges: set[tuple[str, str]],
    ids: list[str],
) -> None:
    """Acknowledged saves, updates and links, then SIGKILL while a save_many is in flight."""
    batch_done = anyio.Event()
    async with memory_process(home) as (client, process):
        for n in range(500):
            saved = structured(
                await client.call_tool(
                    "save", {"type": "fact", "data": {"assertion": f"fact number {n}"}}
                )
            )
            ids.append(saved["id"])
            acknowledged[saved["id"]] = (1, saved["content_hash"], saved["vector_clock"])
        for n in range(100):
            updated = structured(
                await client.call_tool(
                    "update", {"id": ids[n], "data": {"assertion": f"fact number {n}, revised"}}
                )
            )
            acknowledged[ids[n]] = (
                updated["version"],
                updated["content_hash"],
                updated["vector_clock"],
            )
        for n in range(200):
            structured(
                await client.call_tool(
                    "link", {"from_id": ids[n], "to_id": ids[n + 1], "relation": "references"}
                )
            )
            edges.add((ids[n], ids[n + 1]))
        items = [
            {"type": "fact", "data": {"assertion": f"batch item {n}"}, "namespace": "agent:batch"}
            for n in range(500)
        ]

        async def burst() -> None:
            try:
                await client.call_tool("save_many", {"items": items})
            except Exception:  # noqa: BLE001 - the connection dies with the server; expected
                pass
            batch_done.set()

        async with anyio.create_task_group() as group:
            group.start_soon(burst)
            await anyio.sleep(0.15)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            with anyio.fail_after(30):
                await batch_done.wait()


async def test_kill_9_during_a_batch_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """500 saves, 100 updates and 200 links are acknowledged; SIGKILL lands during a save_many
    of 500; after a restart each record keeps version, hash and clock, the batch is all or
    nothing, and no version or edge dangles."""
    acknowledged: dict[str, tuple[int, str, dict[str, int]]] = {}
    edges: set[tuple[str, str]] = set()
    ids: list[str] = []
    try:
        await write_then_kill(tmp_path, acknowledged, edges, ids)
    except* (httpx2.HTTPError, MCPError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the client's streams die with the killed server

    database = tmp_path / "memory.db"
    database = tmp_path / "memory.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        connection.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
        orphan_versions = connection.execute(
            "SELECT COUNT(*) FROM versions v LEFT JOIN memories m ON m.id = v.memory_id "
            "WHERE m.id IS NULL"
        ).fetchone()[0]
        orphan_edges = connection.execute(
            "SELECT COUNT(*) FROM edges e WHERE NOT EXISTS (SELECT 1 FROM memories WHERE id = "
            "e.from_id) OR NOT EXISTS (SELECT 1 FROM memories WHERE id = e.to_id)"
        ).fetchone()[0]
    assert (orphan_versions, orphan_edges) == (0, 0)

    async with memory_process(tmp_path) as (client, _):
        for memory_id, (version, content_hash, clock) in acknowledged.items():
            record = structured(await client.call_tool("get", {"id": memory_id}))
            assert (record["version"], record["content_hash"], record["vector_clock"]) == (
                version,
                content_hash,
                clock,
            )
        found: set[tuple[str, str]] = set()
        for start in range(0, 201, 99):  # overlapping pages cover each n -> n+1 edge
            page = structured(
                await client.call_tool(
                    "get_many", {"ids": ids[start : start + 100], "include_edges": True}
                )
            )
            found |= {(e["from_id"], e["to_id"]) for e in page["edges"]}
        batch = structured(await client.call_tool("stats", {"namespace": "agent:batch"}))
    missing = sorted((ids.index(a), ids.index(b)) for a, b in edges - found)
    assert missing == []
    assert batch["by_tier"]["persistent"] in (0, 500)
