"""`make demo`: start the AIOS host with every installed server on embedded defaults, show what
it serves, and run a sample job through it, with readable progress.

The demo's data lives in a fresh directory (printed at the start) unless AIOS_HOME is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from rich.console import Console
from rich.table import Table

console = Console(stderr=False)
REPO = Path(__file__).resolve().parent.parent
HOST = [sys.executable, "-m", "aios_host", "--transport", "http", "--port", "0"]
Step = Callable[[Client], Awaitable[None]]


@asynccontextmanager
async def running_host(home: Path, agents: list[Path]) -> AsyncIterator[Client]:
    ready = home / "demo-host.ready"
    log = home / "host.log"
    token = os.urandom(16).hex()
    with log.open("wb") as log_file:
        process = await anyio.open_process(
            [*HOST, "--home", str(home), "--ready-file", str(ready)],
            env={
                **os.environ,
                "AIOS_AUTH_TOKEN": token,
                "AIOS_HOME": str(home),
                # The scheduler starts and supervises a worker for each sample agent.
                "AIOS_AGENTS": json.dumps([str(agent) for agent in agents]),
            },
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 120
            with console.status("Starting the host and its servers..."):
                while not ready.exists():
                    if process.returncode is not None or time.monotonic() > deadline:
                        console.print(f"[red]The host did not start; its log: {log}")
                        raise SystemExit(1)
                    await anyio.sleep(0.1)
            url = json.loads(ready.read_text())["url"]
            console.print(f"[green]Host serving[/green] {url} (log: {log})")
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    yield client
        finally:
            process.terminate()
            with anyio.move_on_after(30, shield=True):
                await process.wait()


async def show_status(client: Client) -> None:
    status = await client.call_tool("host_status", {})
    assert status.structured_content is not None
    table = Table(title="Servers under the host")
    for column in ("server", "state", "transport", "tools", "url"):
        table.add_column(column)
    for child in status.structured_content["children"]:
        table.add_row(
            child["name"],
            child["state"],
            child["transport"],
            str(child["tools"]),
            child["url"] or "",
        )
    console.print(table)
    if not status.structured_content["children"]:
        console.print(
            "[yellow]No subsystem server is installed yet; the host serves its own tools."
        )


async def show_tools(client: Client) -> None:
    tools = (await client.list_tools()).tools
    by_server: dict[str, int] = {}
    for tool in tools:
        server = tool.name.split("_", 1)[0]
        by_server[server] = by_server.get(server, 0) + 1
    summary = ", ".join(f"{server}: {count}" for server, count in sorted(by_server.items()))
    console.print(f"[bold]{len(tools)} tools[/bold] ({summary})")


def structured(result: types.CallToolResult, what: str) -> dict[str, Any]:
    """The structured result of a call, or a readable stop when it failed."""
    if result.is_error or result.structured_content is None:
        text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
        console.print(f"[red]{what} failed:[/red] {text}")
        raise SystemExit(1)
    content: dict[str, Any] = result.structured_content
    return content


async def sample_job(client: Client) -> None:
    """A client with a scheduling quota submits a job; the sample agent (a supervised aios-agent
    worker) runs its pipeline of durable steps; the result is remembered and found again."""
    names = {tool.name for tool in (await client.list_tools()).tools}
    if "scheduler_submit_job" not in names:
        console.print("[yellow]Sample job skipped: the scheduler server is not installed.")
        return
    await client.call_tool(
        "scheduler_register_client", {"client_id": "demo", "tier": "marketplace", "credits": 10}
    )
    submitted = structured(
        await client.call_tool(
            "scheduler_submit_job", {"client_id": "demo", "task": "echo", "input": "hello, aios"}
        ),
        "submit_job",
    )
    job_id = submitted.get("job_id") or submitted.get("job", {}).get("job_id")
    console.print(f"Submitted job [bold]{job_id}[/bold]: state {submitted.get('state', 'pending')}")

    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        text = message or str(progress)
        if not seen or seen[-1] != text:
            seen.append(text)
            console.print(f"  [dim]job is[/dim] {text}")

    finished = structured(
        await client.call_tool(
            "scheduler_wait_job",
            {"job_id": job_id, "states": ["completed", "failed"], "timeout_s": 60},
            progress_callback=on_progress,
        ),
        "wait_job",
    )
    job = finished.get("job", finished)
    console.print(
        f"Job {job_id}: [bold green]{job.get('state')}[/bold green] -> {job.get('result')}"
    )
    if "memory_save" not in names:
        return
    saved = structured(
        await client.call_tool(
            "memory_save",
            {
                "type": "agent_run",
                "data": {
                    "agent_id": "echo-1",
                    "task": "echo",
                    "status": "completed",
                    "result": job.get("result"),
                },
                "text": f"demo job {job_id} answered {job.get('result')}",
                "tags": ["demo"],
            },
        ),
        "memory_save",
    )
    found = structured(await client.call_tool("memory_search", {"query": "demo job"}), "search")
    console.print(
        f"Remembered as {saved.get('id', saved)}; search finds {len(found.get('hits', []))}"
    )


async def main() -> None:
    preset = os.environ.get("AIOS_HOME")
    with tempfile.TemporaryDirectory(prefix="aios-demo-") as scratch:
        home = Path(preset) if preset else Path(scratch)
        home.mkdir(parents=True, exist_ok=True)
        console.rule("AIOS demo")
        console.print(f"Data directory: {home}")
        async with running_host(
            home, agents=[REPO / "servers/scheduler/agents/echo.yaml"]
        ) as client:
            steps: list[tuple[str, Step]] = [
                ("Host status", show_status),
                ("Tools", show_tools),
                ("Sample job", sample_job),
            ]
            for title, step in steps:
                console.rule(title)
                await step(client)
        console.rule("Done")


if __name__ == "__main__":
    anyio.run(main)
