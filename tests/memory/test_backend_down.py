"""Backend down (spec/memory.md section 6, test 30): with the graph server stopped every tool
fails fast with subsystem_unavailable while types keeps working; once the server is back the
same running memory server recovers without a restart."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import anyio
import pytest
from mcp import Client

from aios_memory.config import MemorySettings
from aios_memory.server import build_server
from aios_memory.store_neo4j import Neo4jStore
from tests.memory.support import free_port, start_arcadedb, stop_process

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HANG_GUARD_S = 30  # a bound against hanging, not a timing assertion


async def test_tools_fail_fast_while_neo4j_is_down_and_recover_after(tmp_path: Path) -> None:
    root = tempfile.mkdtemp(prefix="aios-arcadedb-down-")
    bolt, http = free_port(), free_port()
    process = await anyio.to_thread.run_sync(start_arcadedb, root, bolt, http)
    try:
        store = Neo4jStore(
            f"bolt://127.0.0.1:{bolt}",
            ("root", "testpassword"),
            "graph",
            schema_http_url=f"http://127.0.0.1:{http}",
        )
        settings = MemorySettings(home=tmp_path, backend="neo4j", node_id="down-test")
        async with Client(build_server(settings, store=store), mode="legacy") as client:
            saved = await client.call_tool(
                "save", {"type": "fact", "data": {"assertion": "survives outages"}}
            )
            assert saved.structured_content is not None
            memory_id = saved.structured_content["id"]
            await anyio.to_thread.run_sync(stop_process, process)
            with anyio.fail_after(HANG_GUARD_S):
                down = [
                    await client.call_tool("get", {"id": memory_id}),
                    await client.call_tool("search", {"query": "outages"}),
                    await client.call_tool(
                        "save", {"type": "fact", "data": {"assertion": "while down"}}
                    ),
                    await client.call_tool("neighbors", {"id": memory_id}),
                ]
                types_result = await client.call_tool("types", {"type": "fact"})
            process = await anyio.to_thread.run_sync(start_arcadedb, root, bolt, http)
            with anyio.fail_after(HANG_GUARD_S):
                back = await client.call_tool("get", {"id": memory_id})
    finally:
        stop_process(process)
        shutil.rmtree(root, ignore_errors=True)
    for result in down:
        assert result.is_error and result.structured_content is not None
        assert result.structured_content["code"] == "subsystem_unavailable"
        assert result.structured_content["details"]["reason"] == "backend_unavailable"
    assert not types_result.is_error
    assert not back.is_error and back.structured_content is not None
    assert back.structured_content["data"]["assertion"] == "survives outages"
