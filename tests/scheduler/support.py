"""Helpers of the scheduler tests: real server processes over stdio, in-memory servers, and
calls that assert success or a typed error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextResourceContents

from aios_scheduler.config import SchedulerSettings
from aios_scheduler.server import build_server
from tests.helpers import REPO, START_DEADLINE_S, stop, wait_for_file


def stdio_parameters(
    home: Path, *flags: str, env: dict[str, str] | None = None
) -> StdioServerParameters:
    """The scheduler as a real child process on stdio, with its database under ``home``."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "aios_scheduler", "--home", str(home), "--log-level", "warning", *flags],
        env={**os.environ, **(env or {})},
        cwd=str(REPO),
    )


@asynccontextmanager
async def stdio_scheduler(
    home: Path, *flags: str, env: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    parameters = stdio_parameters(home, *flags, env=env)
    async with Client(parameters, read_timeout_seconds=60) as client:
        yield client


@asynccontextmanager
async def memory_scheduler(home: Path, **settings: Any) -> AsyncIterator[Client]:
    """The scheduler in-process (same server object, no transport), for surface tests."""
    async with Client(build_server(SchedulerSettings(home=home, **settings))) as client:
        yield client


async def ok(client: Client, tool: str, **arguments: Any) -> Any:
    """Call a tool that must succeed; return its structured content."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.structured_content, result.content)
    content = result.structured_content
    assert content is not None, (tool, result.content)
    if set(content) == {"result"}:
        return content["result"]
    return content


async def refused(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must fail with a typed error; return ``{code, message, details}``."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, result.structured_content)
    content = result.structured_content
    assert isinstance(content, dict), (tool, result.content)
    return content


def reason(error: dict[str, Any]) -> str:
    value = error["details"].get("reason")
    assert isinstance(value, str), error
    return value


async def read_json(client: Client, uri: str) -> Any:
    result = await client.read_resource(uri)
    content = result.contents[0]
    assert isinstance(content, TextResourceContents), content
    return json.loads(content.text)


async def dispatch_letters(client: Client, agent_id: str, count: int, names: dict[str, str]) -> str:
    """Dispatch and complete ``count`` jobs; the string of client letters in dispatch order."""
    letters = []
    for _ in range(count):
        leased = await ok(client, "dispatch_next", agent_id=agent_id)
        job = leased["job"]
        assert job is not None, "the queue ran dry"
        letters.append(names[job["client_id"]])
        await ok(
            client, "complete_job", job_id=job["job_id"], lease_id=leased["lease_id"], result={}
        )
    return "".join(letters)


@dataclass
class HttpScheduler:
    """A real scheduler process on loopback Streamable HTTP (so a test can SIGKILL it)."""

    url: str
    token: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
            Client(streamable_http_client(self.url, http_client=http)) as client,
        ):
            yield client


@contextmanager
def http_scheduler(
    home: Path, *flags: str, env: dict[str, str] | None = None
) -> Iterator[HttpScheduler]:
    """Start the scheduler on a free port with its data under ``home``; stop it at the end."""
    home.mkdir(parents=True, exist_ok=True)
    token = "test-" + os.urandom(8).hex()
    ready = home / f"ready-{os.urandom(4).hex()}.json"
    log = home / "scheduler.log"
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aios_scheduler",
                "--home",
                str(home),
                "--transport",
                "http",
                "--port",
                "0",
                "--ready-file",
                str(ready),
                "--log-level",
                "warning",
                *flags,
            ],
            # Workers hold long-polls open; a short grace keeps each test's shutdown quick.
            env={
                **os.environ,
                "AIOS_AUTH_TOKEN": token,
                "AIOS_SHUTDOWN_GRACE_S": "1",
                **(env or {}),
            },
            cwd=str(REPO),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            wait_for_file(ready, process, START_DEADLINE_S, log)
            url = json.loads(ready.read_text(encoding="utf-8"))["url"]
            yield HttpScheduler(url=url, token=token, process=process)
        finally:
            stop(process)


def kill_stdio_scheduler(home: Path) -> None:
    """SIGKILL the stdio scheduler child serving ``home`` (found by its command line among
    this process's children), exactly like a crash."""
    marker = ["-m", "aios_scheduler", "--home", str(home)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().decode().split("\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent.split()[1]) == os.getpid() and arguments[1:5] == marker:
            os.kill(int(entry.name), signal.SIGKILL)
            return
    raise AssertionError(f"no scheduler child serves {home}")
