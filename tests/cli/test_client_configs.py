"""The MCP client configurations we ship (clients/configs/*.json and the root mcp.json) parse,
have the shape their client expects, and name a command that starts a working host over stdio
once the checkout path placeholder is filled in."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.helpers import REPO, START_DEADLINE_S

pytestmark = pytest.mark.anyio

CONFIGS = REPO / "clients" / "configs"
CHECKOUT_PLACEHOLDER = "/ABSOLUTE/PATH/TO/aios"
VSCODE_WORKSPACE = "${workspaceFolder}"

# (file, the key holding the servers, the placeholder for the checkout path)
CASES = [
    pytest.param(
        CONFIGS / "claude_desktop_config.json",
        "mcpServers",
        CHECKOUT_PLACEHOLDER,
        id="claude-desktop",
    ),
    pytest.param(CONFIGS / "cursor_mcp.json", "mcpServers", CHECKOUT_PLACEHOLDER, id="cursor"),
    pytest.param(CONFIGS / "vscode_mcp.json", "servers", VSCODE_WORKSPACE, id="vscode"),
    pytest.param(REPO / "mcp.json", "mcpServers", CHECKOUT_PLACEHOLDER, id="root-mcp-json"),
]


def aios_entry(path: Path, servers_key: str) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), document
    assert list(document) == [servers_key]
    entry = document[servers_key]["aios"]
    assert isinstance(entry, dict), entry
    return entry


def uv_executable() -> str:
    """uv itself: `uv run` names it in $UV; otherwise the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    if found is None:
        pytest.fail("uv is neither in $UV nor on PATH: run the tests with `uv run pytest`.")
    return found


@pytest.mark.parametrize(("path", "servers_key", "placeholder"), CASES)
def test_each_config_has_the_shape_its_client_expects(
    path: Path, servers_key: str, placeholder: str
) -> None:
    """One `aios` entry running the host over stdio with uv from the checkout; VS Code's
    entry also says `type: stdio`."""
    entry = aios_entry(path, servers_key)

    expected_keys = {"type", "command", "args"} if servers_key == "servers" else {"command", "args"}
    assert set(entry) == expected_keys
    if servers_key == "servers":
        assert entry["type"] == "stdio"
    assert entry["command"] == "uv"
    assert entry["args"] == ["run", "--directory", placeholder, "aios-host", "--transport", "stdio"]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "servers_key", "placeholder"), CASES)
async def test_each_config_starts_a_working_host(
    path: Path, servers_key: str, placeholder: str, tmp_path: Path
) -> None:
    """The command, run from elsewhere with the placeholder replaced by this checkout, serves
    MCP over stdio: tools/list shows host_status and host_status answers. An empty layout
    (AIOS_CONFIG) keeps the subsystem servers out of it; UV_FROZEN keeps uv off the lock file."""
    entry = aios_entry(path, servers_key)
    args = [str(REPO) if arg == placeholder else str(arg) for arg in entry["args"]]
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps({"servers": []}), encoding="utf-8")
    kept = {key: value for key, value in os.environ.items() if not key.startswith("AIOS_")}
    environment = {
        **kept,
        "AIOS_HOME": str(tmp_path / "home"),
        "AIOS_CONFIG": str(layout),
        "UV_FROZEN": "1",
    }
    parameters = StdioServerParameters(
        command=uv_executable(), args=args, env=environment, cwd=str(tmp_path)
    )

    with anyio.fail_after(START_DEADLINE_S):
        async with Client(parameters) as client:
            tools = [tool.name for tool in (await client.list_tools()).tools]
            status = await client.call_tool("host_status", {})

    assert "host_status" in tools
    assert not status.is_error
    assert status.structured_content is not None
    assert status.structured_content["children"] == []
