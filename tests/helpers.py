"""Helpers the integration tests share: the repo's paths, npm tools, and real host processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
FIXTURE_SERVER = REPO / "tests" / "conformance" / "everything_server.py"
NODE_BIN = REPO / ".tools" / "node" / "node_modules" / ".bin"
START_DEADLINE_S = 60.0


def npm_tool(name: str) -> Path:
    """A binary installed by scripts/install-test-deps.sh; a clear failure when it is missing."""
    path = NODE_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/install-test-deps.sh (make test does).")
    return path


def node_environment() -> dict[str, str]:
    """PATH with the npm-installed Node 22 first, so the reference servers run on it."""
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def fixture_child(name: str, *, transport: str = "stdio", **extra: Any) -> dict[str, Any]:
    """A layout entry running our everything-shaped fixture server."""
    return {
        "name": name,
        "command": [sys.executable, str(FIXTURE_SERVER)],
        "transport": transport,
        **extra,
    }


def write_layout(directory: Path, servers: list[dict[str, Any]], name: str = "layout.json") -> Path:
    path = directory / name
    path.write_text(json.dumps({"servers": servers}), encoding="utf-8")
    return path


def host_stdio_parameters(
    layout: Path, home: Path, environment: dict[str, str] | None = None
) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "aios_host", "--config", str(layout), "--home", str(home)],
        env={**node_environment(), **(environment or {})},
        cwd=str(REPO),
    )


@dataclass(frozen=True)
class HttpHost:
    url: str
    token: str
    process: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return self.url.removesuffix("/mcp")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def wait_for_file(
    path: Path, process: subprocess.Popen[bytes], deadline_s: float, log: Path | None = None
) -> None:
    """Poll for a file a child process writes once ready; fail early if the process dies."""
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        if process.poll() is not None:
            stderr = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            pytest.fail(f"process exited with {process.returncode} before ready:\n{stderr}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} not written within {deadline_s} s")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextmanager
def http_host(
    layout: Path, home: Path, environment: dict[str, str] | None = None
) -> Iterator[HttpHost]:
    """A real host process serving Streamable HTTP + SSE on a free loopback port."""
    token = "test-token-" + os.urandom(8).hex()
    ready = home / "ready.json"
    log = home / "host.log"
    home.mkdir(parents=True, exist_ok=True)
    log_file = log.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aios_host",
            "--config",
            str(layout),
            "--home",
            str(home),
            "--transport",
            "http",
            "--port",
            "0",
            "--ready-file",
            str(ready),
        ],
        env={**node_environment(), "AIOS_AUTH_TOKEN": token, **(environment or {})},
        cwd=str(REPO),
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        wait_for_file(ready, process, START_DEADLINE_S, log)
        url = json.loads(ready.read_text(encoding="utf-8"))["url"]
        yield HttpHost(url=url, token=token, process=process)
    finally:
        stop(process)
        log_file.close()


async def poll_until(
    check: Callable[[], Awaitable[T | None]], deadline_s: float = 20.0, interval_s: float = 0.05
) -> T:
    """Ask a remote party until ``check`` returns a value (no event crosses a process)."""
    with anyio.fail_after(deadline_s):
        while True:
            value = await check()
            if value is not None:
                return value
            await anyio.sleep(interval_s)


@asynccontextmanager
async def connect_host(transport: str, layout: Path, home: Path) -> AsyncIterator[Client]:
    """A client session with a real host process over ``stdio``, ``http`` or ``sse``."""
    if transport == "stdio":
        async with Client(host_stdio_parameters(layout, home), mode="legacy") as client:
            yield client
        return
    with http_host(layout, home) as host:
        if transport == "sse":
            sse = sse_client(f"{host.base}/sse", headers=host.headers())
            async with Client(sse, mode="legacy") as client:
                yield client
            return
        async with httpx2.AsyncClient(headers=host.headers(), timeout=30) as http:
            async with Client(streamable_http_client(host.url, http_client=http)) as client:
                yield client
