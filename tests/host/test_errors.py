"""Bad configuration, bad arguments, unknown names and oversized payloads get typed errors with
actionable messages; nothing crashes and no traceback reaches the client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.helpers import REPO, fixture_child, host_stdio_parameters, http_host, write_layout

pytestmark = pytest.mark.anyio


def run_host(*arguments: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aios_host", "--home", str(home), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        pytest.param(
            [
                {"name": "a", "command": ["x"], "depends_on": ["b"]},
                {"name": "b", "command": ["x"], "depends_on": ["a"]},
            ],
            "dependency cycle between servers",
            id="cycle",
        ),
        pytest.param(
            [{"name": "a", "command": ["x"], "depends_on": ["ghost"]}],
            "depends on unknown server(s) ghost",
            id="unknown-dependency",
        ),
        pytest.param([{"name": "a"}], "exactly one of 'command' or 'module'", id="no-command"),
    ],
)
def test_a_bad_layout_stops_the_host_at_start_with_a_clear_message(
    tmp_path: Path, servers: list[dict[str, object]], message: str
) -> None:
    completed = run_host("--config", str(write_layout(tmp_path, servers)), home=tmp_path)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_missing_layout_file_is_named(tmp_path: Path) -> None:
    completed = run_host("--config", str(tmp_path / "nope.toml"), home=tmp_path)
    assert completed.returncode == 2
    assert f"Cannot read config file {tmp_path / 'nope.toml'}" in completed.stderr


def test_two_children_offering_the_same_name_stop_the_host_naming_both(tmp_path: Path) -> None:
    layout = write_layout(
        tmp_path, [fixture_child("one", prefix=""), fixture_child("two", prefix="")]
    )
    completed = run_host("--config", str(layout), home=tmp_path)
    assert completed.returncode == 2
    assert "is offered by both 'one' and 'two'" in completed.stderr


async def test_bad_input_to_tools_gets_typed_errors(tmp_path: Path) -> None:
    layout = write_layout(tmp_path, [fixture_child("fixture")])
    async with Client(host_stdio_parameters(layout, tmp_path / "home"), mode="legacy") as client:
        wrong_type = await client.call_tool("fixture_add", {"a": "two", "b": 3})
        missing = await client.call_tool("fixture_add", {"a": 2})
        unknown = await client.call_tool("fixture_nope", {})
        oversized = await client.call_tool("fixture_add", {"a": 1, "b": 2, "pad": "x" * 1_100_000})
        still_fine = await client.call_tool("fixture_add", {"a": 2, "b": 3})
        with pytest.raises(MCPError, match="Unknown prompt 'nope'"):
            await client.get_prompt("nope", {})
        with pytest.raises(MCPError, match="Resource not found: nowhere://x"):
            await client.read_resource("nowhere://x")

    errors = {
        "wrong_type": wrong_type.structured_content,
        "missing": missing.structured_content,
        "unknown": unknown.structured_content,
        "oversized": oversized.structured_content,
    }
    assert {name: error["code"] for name, error in errors.items() if error} == {
        "wrong_type": "invalid_argument",
        "missing": "invalid_argument",
        "unknown": "not_found",
        "oversized": "invalid_argument",
    }
    assert "a: 'two' is not of type 'integer'" in errors["wrong_type"]["message"]
    assert "'b' is a required property" in errors["missing"]["message"]
    assert "Call tools/list" in errors["unknown"]["message"]
    assert "the limit is 1048576 bytes" in errors["oversized"]["message"]
    assert still_fine.structured_content == {"result": 5}
    for result in (wrong_type, missing, unknown, oversized):
        assert "Traceback" not in str(result.content)


async def test_the_http_gateway_checks_auth_origin_host_and_size(tmp_path: Path) -> None:
    """401 without the bearer token, 421 for a foreign Host, 403 for a foreign Origin (DNS
    rebinding), 413 past the body limit; /healthz stays public."""
    layout = write_layout(tmp_path, [fixture_child("fixture")])
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    with http_host(layout, tmp_path / "home") as host:
        async with httpx2.AsyncClient(timeout=30) as http:
            no_token = await http.post(host.url, json=initialize, headers=accept)
            wrong_token = await http.post(
                host.url, json=initialize, headers={**accept, "Authorization": "Bearer nope"}
            )
            sse_no_token = await http.get(f"{host.base}/sse")
            authed = {**accept, **host.headers()}
            evil_host = await http.post(
                host.url, json=initialize, headers={**authed, "Host": "evil.example:80"}
            )
            evil_origin = await http.post(
                host.url, json=initialize, headers={**authed, "Origin": "http://evil.example"}
            )
            too_big = await http.post(
                host.url,
                content=b'{"jsonrpc":"2.0","id":1,"method":"ping","pad":"'
                + b"x" * 5_000_000
                + b'"}',
                headers={**authed, "Content-Type": "application/json"},
            )
            healthz = await http.get(f"{host.base}/healthz")
            metrics = await http.get(f"{host.base}/metrics", headers=host.headers())
    assert (no_token.status_code, wrong_token.status_code, sse_no_token.status_code) == (
        401,
        401,
        401,
    )
    assert "Bearer" in no_token.headers["www-authenticate"]
    assert evil_host.status_code == 421
    assert evil_origin.status_code == 403
    assert too_big.status_code == 413
    assert healthz.status_code == 200
    assert healthz.json()["status"] == "ok"
    assert "aios_mcp_requests_total" in metrics.text
