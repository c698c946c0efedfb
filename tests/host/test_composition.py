"""The host composes real servers (ours and the npm reference servers) under their prefixes and
forwards tools, resources, templates and prompts, over stdio and over Streamable HTTP."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client

from aios_host.catalog import PUBLIC_NAME
from tests.helpers import connect_host, fixture_child, npm_tool, write_layout

pytestmark = [pytest.mark.anyio, pytest.mark.npm]


def layout(tmp_path: Path) -> Path:
    shared_dir = tmp_path / "files"
    shared_dir.mkdir()
    (shared_dir / "hello.txt").write_text("hello from the filesystem server\n", encoding="utf-8")
    return write_layout(
        tmp_path,
        [
            fixture_child("fixture", transport="http"),
            {"name": "everything", "command": [str(npm_tool("mcp-server-everything")), "stdio"]},
            {
                "name": "files",
                "command": [str(npm_tool("mcp-server-filesystem")), str(shared_dir)],
                "depends_on": ["fixture"],
            },
        ],
    )


def connect(transport: str, tmp_path: Path) -> AbstractAsyncContextManager[Client]:
    return connect_host(transport, layout(tmp_path), tmp_path / "home")


@pytest.mark.parametrize("transport", ["stdio", "http", "sse"])
async def test_the_host_lists_and_forwards_everything_its_children_offer(
    transport: str, tmp_path: Path
) -> None:
    """One session to the host reaches three children: ours over loopback HTTP and the two npm
    reference servers over stdio."""
    async with connect(transport, tmp_path) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        added = await client.call_tool("fixture_add", {"a": 2, "b": 3})
        echoed = await client.call_tool("everything_echo", {"message": "hi"})
        listed = await client.call_tool("files_list_allowed_directories", {})
        static = await client.read_resource("test://static-text")
        templated = await client.read_resource("test://template/42/data")
        templates = (await client.list_resource_templates()).resource_templates
        prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
        prompt = await client.get_prompt(
            "fixture_test_prompt_with_arguments", {"arg1": "x", "arg2": "y"}
        )
        status = await client.call_tool("host_status", {})

    assert all(PUBLIC_NAME.fullmatch(name) for name in tools), sorted(tools)
    assert {"fixture_add", "everything_echo", "files_read_text_file", "host_status"} <= set(tools)
    assert added.structured_content == {"result": 5}
    assert not echoed.is_error
    assert isinstance(echoed.content[0], types.TextContent)
    assert "hi" in echoed.content[0].text
    assert not listed.is_error
    assert isinstance(static.contents[0], types.TextResourceContents)
    assert static.contents[0].text
    assert isinstance(templated.contents[0], types.TextResourceContents)
    assert "42" in templated.contents[0].text
    assert any(template.uri_template == "test://template/{id}/data" for template in templates)
    assert {"fixture_test_simple_prompt", "fixture_test_prompt_with_arguments"} <= prompts
    assert isinstance(prompt.messages[0].content, types.TextContent)
    assert "x" in prompt.messages[0].content.text
    assert status.structured_content is not None
    states = {child["name"]: child["state"] for child in status.structured_content["children"]}
    assert states == {"fixture": "running", "everything": "running", "files": "running"}


async def test_the_filesystem_server_reads_through_the_host(tmp_path: Path) -> None:
    async with connect("stdio", tmp_path) as client:
        text = await client.call_tool(
            "files_read_text_file", {"path": str(tmp_path / "files" / "hello.txt")}
        )
        outside = await client.call_tool("files_read_text_file", {"path": "/etc/hostname"})
    assert not text.is_error
    assert text.structured_content == {"content": "hello from the filesystem server\n"}
    assert outside.is_error
    assert outside.structured_content is not None
    assert outside.structured_content["code"] == "tool_failed"
