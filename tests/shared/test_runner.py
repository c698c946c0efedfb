"""The runner serves any server the same way: stdio, Streamable HTTP and legacy SSE side by side,
a ready file, public /healthz, guarded /metrics, and a graceful stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import REPO, stop, wait_for_file

pytestmark = pytest.mark.anyio

PEER_SERVER = REPO / "tests" / "shared" / "peer_server.py"


async def test_http_serves_mcp_sse_health_and_metrics_then_stops_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(PEER_SERVER), "--transport", "http", "--ready-file", str(ready)],
            env={**os.environ, "AIOS_AUTH_TOKEN": "runner-token"},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_for_file(ready, process, 30, tmp_path / "server.log")
            document = json.loads(ready.read_text())
            url = document["url"]
            base = url.removesuffix("/mcp")
            headers = {"Authorization": "Bearer runner-token"}
            async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
                async with Client(streamable_http_client(url, http_client=http)) as modern:
                    echoed = await modern.call_tool("echo", {"text": "modern"})
                async with Client(
                    streamable_http_client(url, http_client=http), mode="legacy"
                ) as legacy:
                    legacy_echo = await legacy.call_tool("echo", {"text": "legacy"})
            async with Client(sse_client(f"{base}/sse", headers=headers), mode="legacy") as sse:
                sse_echo = await sse.call_tool("echo", {"text": "sse"})
            async with httpx2.AsyncClient(timeout=30) as anonymous:
                health = await anonymous.get(f"{base}/healthz")
                metrics_refused = await anonymous.get(f"{base}/metrics")
                metrics = await anonymous.get(f"{base}/metrics", headers=headers)
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(30)
        finally:
            stop(process)
    assert document["pid"] == process.pid
    assert echoed.structured_content is not None
    assert echoed.structured_content["text"] == "modern"
    assert legacy_echo.structured_content is not None
    assert legacy_echo.structured_content["text"] == "legacy"
    assert sse_echo.structured_content is not None
    assert sse_echo.structured_content["text"] == "sse"
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "service": "peer", "pid": process.pid}
    assert metrics_refused.status_code == 401
    assert (
        'aios_mcp_requests_total{method="tools/call",outcome="ok",service="peer"} 3.0'
        in metrics.text
    )
    assert exit_code == 0


async def test_stdio_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    parameters = StdioServerParameters(command=sys.executable, args=[str(PEER_SERVER)])
    async with Client(parameters, mode="legacy") as client:
        echoed = await client.call_tool("echo", {"text": "stdio"})
        pid = (await client.call_tool("pid", {})).structured_content
    assert echoed.structured_content is not None
    assert echoed.structured_content["text"] == "stdio"
    assert pid is not None
    stdio = subprocess.Popen(
        [sys.executable, str(PEER_SERVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert stdio.stdin is not None
        stdio.stdin.write(
            b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
            b'"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}\n'
        )
        stdio.stdin.flush()
        assert stdio.stdout is not None
        assert b'"id":1' in stdio.stdout.readline()
        stdio.send_signal(signal.SIGTERM)
        assert stdio.wait(30) == 0
    finally:
        stop(stdio)
        for pipe in (stdio.stdin, stdio.stdout):
            if pipe is not None:
                pipe.close()
