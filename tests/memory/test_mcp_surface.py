"""The MCP surface (spec/memory.md section 5; tests 1 and 27): in process, standalone over stdio
with zero set-up, and through the real host over stdio and Streamable HTTP."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jsonschema
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client

from aios_memory.config import MemorySettings
from aios_memory.schemas import SUBCATEGORIES, TYPES
from aios_memory.server import build_server
from tests.helpers import REPO, host_stdio_parameters, http_host, write_layout
from tests.memory.support import GraphServer, reset_neo4j

pytestmark = [
    pytest.mark.anyio,
    # Handshake-era clients subscribe with resources/subscribe, which the SDK flags as removed in
    # 2026-07-28; Claude Desktop and the host still use it.
    pytest.mark.filterwarnings(
        "ignore:resources/subscribe is removed:mcp.shared.exceptions.MCPDeprecationWarning"
    ),
]

TOOLS = {
    "save", "save_many", "get", "get_many", "search", "list", "update", "evolve", "merge",
    "resolve", "delete", "restore", "promote", "link", "unlink", "neighbors", "path", "history",
    "lineage", "conflicts", "types", "stats", "reindex", "import", "export",
}  # fmt: skip


def text_of(result: types.ReadResourceResult) -> Any:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    return json.loads(content.text)


async def test_types_lists_the_24_types_with_schemas_and_valid_examples(tmp_path: Path) -> None:
    """Test 1: exactly the 24 names in six subcategories, each with a JSON Schema its example
    satisfies; memory://types/fact returns the same schema."""
    async with Client(build_server(MemorySettings(home=tmp_path))) as client:
        listed = await client.call_tool("types", {})
        fact = text_of(await client.read_resource("memory://types/fact"))
    assert listed.structured_content is not None
    described = listed.structured_content["types"]
    assert [t["name"] for t in described] == list(TYPES)
    assert {t["subcategory"] for t in described} == set(SUBCATEGORIES)
    for entry in described:
        jsonschema.validate(entry["example"], entry["json_schema"])
    assert fact["json_schema"] == described[0]["json_schema"]


async def test_every_tool_declares_input_and_output_schemas_and_errors_are_structured(
    tmp_path: Path,
) -> None:
    """Test 27 (in process): the tools of section 5 with both schemas; typed errors, and SDK
    argument errors too, arrive as is_error with {code, message, details} and no traceback."""
    async with Client(build_server(MemorySettings(home=tmp_path))) as client:
        tools = (await client.list_tools()).tools
        semantic = await client.call_tool("search", {"query": "owls", "mode": "semantic"})
        unknown = await client.call_tool("save", {"type": "memo", "data": {}})
        wrong_type = await client.call_tool("get", {"id": 42})
        bad_id = await client.call_tool("get", {"id": "abc"})
    assert {tool.name for tool in tools} == TOOLS
    assert all(tool.input_schema and tool.output_schema for tool in tools)
    assert all(tool.description for tool in tools)
    for result, code in ((unknown, "invalid_argument"), (wrong_type, "invalid_argument")):
        assert result.is_error
        assert result.structured_content is not None
        assert result.structured_content["code"] == code
        assert "Traceback" not in json.dumps(result.structured_content)
    assert bad_id.structured_content is not None
    assert bad_id.structured_content["details"]["reason"] == "invalid_id"
    # No inference peer is configured: embeddings are unavailable, typed, at once.
    assert semantic.structured_content is not None
    assert semantic.structured_content["code"] == "subsystem_unavailable"
    assert semantic.structured_content["details"]["peer"] == "inference"


async def exercise(client: Client, prefix: str, updates: Updates) -> None:
    """Save, link, search, traverse, read the resource, subscribe and see the update."""
    saved = await client.call_tool(
        f"{prefix}save", {"type": "fact", "data": {"assertion": "Owls hunt at night"}}
    )
    other = await client.call_tool(
        f"{prefix}save", {"type": "fact", "data": {"assertion": "Mice hide at night"}}
    )
    assert saved.structured_content is not None and other.structured_content is not None
    first, second = saved.structured_content["id"], other.structured_content["id"]
    linked = await client.call_tool(
        f"{prefix}link", {"from_id": first, "to_id": second, "relation": "supports"}
    )
    found = await client.call_tool(f"{prefix}search", {"query": "owls night"})
    around = await client.call_tool(f"{prefix}neighbors", {"id": first, "depth": 1})
    record = text_of(await client.read_resource(f"memory://m/{first}"))
    refused = await client.call_tool(f"{prefix}get", {"id": "abc"})
    await client.subscribe_resource(f"memory://m/{first}")
    await client.call_tool(
        f"{prefix}update", {"id": first, "data": {"assertion": "Owls hunt at dusk"}}
    )
    with anyio.fail_after(10):
        await updates.wait_for(f"memory://m/{first}")
    assert linked.structured_content is not None and linked.structured_content["created"]
    assert found.structured_content is not None
    assert [hit["id"] for hit in found.structured_content["hits"]] == [first]
    assert around.structured_content is not None
    assert [n["id"] for n in around.structured_content["nodes"]] == [first, second]
    assert record["id"] == first and record["data"]["assertion"] == "Owls hunt at night"
    assert refused.is_error and refused.structured_content is not None
    assert refused.structured_content["code"] == "invalid_argument"
    assert "Traceback" not in json.dumps(refused.structured_content)


class Updates:
    """resources/updated notifications seen by a client, with a wait that needs no polling."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._changed = anyio.Event()

    async def on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, uri: str) -> None:
        while uri not in self.uris:
            await self._changed.wait()


async def test_a_subscriber_in_process_gets_resources_updated(tmp_path: Path) -> None:
    """Test 27: the whole round trip on the in-process client."""
    updates = Updates()
    server = build_server(MemorySettings(home=tmp_path))
    async with Client(server, mode="legacy", message_handler=updates.on_message) as client:
        await exercise(client, "", updates)


@pytest.mark.slow
async def test_the_standalone_server_runs_over_stdio_with_zero_set_up(tmp_path: Path) -> None:
    """Issue 4: `python -m aios_memory --transport stdio` keeps SQLite under $AIOS_HOME with no
    configuration at all."""
    updates = Updates()
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aios_memory", "--transport", "stdio"],
        env={"AIOS_HOME": str(tmp_path / "aios"), "PATH": "/usr/bin:/bin"},
        cwd=str(REPO),
    )
    async with Client(parameters, mode="legacy", message_handler=updates.on_message) as client:
        await exercise(client, "", updates)
    assert (tmp_path / "aios" / "memory.db").exists()


@asynccontextmanager
async def through_host(transport: str, tmp_path: Path, updates: Updates) -> AsyncIterator[Client]:
    layout = write_layout(
        tmp_path, [{"name": "memory", "module": "aios_memory", "transport": "http"}]
    )
    home = tmp_path / "home"
    handler = updates.on_message
    if transport == "stdio":
        parameters = host_stdio_parameters(layout, home)
        async with Client(parameters, mode="legacy", message_handler=handler) as client:
            yield client
        return
    with http_host(layout, home) as host:
        async with httpx2.AsyncClient(headers=host.headers(), timeout=30) as http:
            transport_client = streamable_http_client(host.url, http_client=http)
            async with Client(transport_client, mode="legacy", message_handler=handler) as client:
                yield client


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_through_the_host_tools_resources_and_subscriptions_work(
    tmp_path: Path, transport: str
) -> None:
    """Test 27: memory_* tools with both schemas, structured errors, resources/read and
    resources/updated, through the real host over stdio and Streamable HTTP."""
    updates = Updates()
    async with through_host(transport, tmp_path, updates) as client:
        with anyio.fail_after(60):
            while True:
                names = {tool.name for tool in (await client.list_tools()).tools}
                if "memory_save" in names:
                    break
                await anyio.sleep(0.2)
        tools = [t for t in (await client.list_tools()).tools if t.name.startswith("memory_")]
        await exercise(client, "memory_", updates)
    assert {tool.name.removeprefix("memory_") for tool in tools} == TOOLS
    assert all(tool.output_schema for tool in tools)


@pytest.mark.slow
async def test_one_setting_switches_the_standalone_server_to_neo4j(
    tmp_path: Path, graph_server: GraphServer
) -> None:
    """Issue 4: AIOS_BACKEND=neo4j plus the AIOS_NEO4J_* connection settings, nothing else,
    and the same tools work on the graph server."""
    await reset_neo4j(graph_server)
    environment = {
        "AIOS_HOME": str(tmp_path / "aios"),
        "PATH": "/usr/bin:/bin",
        "AIOS_BACKEND": "neo4j",
        "AIOS_NEO4J_URL": graph_server.uri,
        "AIOS_NEO4J_USER": graph_server.auth[0],
        "AIOS_NEO4J_PASSWORD": graph_server.auth[1],
        "AIOS_NEO4J_DATABASE": graph_server.database,
    }
    if graph_server.http is not None:
        environment["AIOS_NEO4J_SCHEMA_HTTP_URL"] = graph_server.http
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aios_memory", "--transport", "stdio"],
        env=environment,
        cwd=str(REPO),
    )
    updates = Updates()
    async with Client(parameters, mode="legacy", message_handler=updates.on_message) as client:
        await exercise(client, "", updates)
        stats = await client.call_tool("stats", {})
    assert stats.structured_content is not None
    assert stats.structured_content["backend"] == "neo4j"
    assert not (tmp_path / "aios" / "memory.db").exists()
