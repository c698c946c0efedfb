"""What the host adds to a tool call: the same `add` call directly to a child server and through
the host, over stdio and over Streamable HTTP, measured in the same run.

Prints p50/p99 latency and calls/s for each path and the ratio host/direct. Target (issue 3,
2-core machine): the host adds at most 0.5 ms p50 and stays within 1.3x of direct latency.

    uv run python bench/host_overhead.py [--calls 500] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "conformance" / "everything_server.py"
TOKEN = "bench-token"


def wait_for(path: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start (exit {process.returncode})")
        time.sleep(0.05)
    url = json.loads(path.read_text())["url"]
    assert isinstance(url, str)
    return url


@asynccontextmanager
async def http_server(argv: list[str], scratch: Path, name: str) -> AsyncIterator[Client]:
    ready = scratch / f"{name}.ready"
    process = subprocess.Popen(
        [*argv, "--transport", "http", "--port", "0", "--ready-file", str(ready)],
        env={**os.environ, "AIOS_AUTH_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = wait_for(ready, process)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(
                streamable_http_client(url, http_client=http), mode="legacy"
            ) as client:
                yield client
    finally:
        process.terminate()
        process.wait(10)


@asynccontextmanager
async def stdio_server(argv: list[str]) -> AsyncIterator[Client]:
    parameters = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
    async with Client(parameters, mode="legacy") as client:
        yield client


def layout(scratch: Path, transport: str) -> Path:
    path = scratch / f"layout-{transport}.json"
    child = {"name": "bench", "command": [sys.executable, str(FIXTURE)], "transport": transport}
    path.write_text(json.dumps({"servers": [child]}))
    return path


async def measure(
    client: Client, tool: str, calls: int, concurrency: int
) -> tuple[list[float], float]:
    """Sequential latencies (seconds), then throughput (calls/s) with `concurrency` callers."""
    for _ in range(20):
        await client.call_tool(tool, {"a": 1, "b": 2})
    latencies = []
    for index in range(calls):
        started = time.perf_counter()
        result = await client.call_tool(tool, {"a": index, "b": 1})
        latencies.append(time.perf_counter() - started)
        assert not result.is_error, result
    done = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        for _ in range(calls // concurrency):
            await client.call_tool(tool, {"a": 1, "b": 1})
            done += 1

    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return latencies, done / (time.perf_counter() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    fixture = [sys.executable, str(FIXTURE)]
    host = [sys.executable, "-m", "aios_host"]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        home = ["--home", str(scratch / "home")]
        for transport in ("stdio", "http"):
            results: dict[str, tuple[list[float], float]] = {}
            if transport == "stdio":
                async with stdio_server(fixture) as client:
                    results["direct"] = await measure(
                        client, "add", options.calls, options.concurrency
                    )
                host_argv = [*host, "--config", str(layout(scratch, "stdio")), *home]
                async with stdio_server(host_argv) as client:
                    results["host"] = await measure(
                        client, "bench_add", options.calls, options.concurrency
                    )
            else:
                async with http_server(fixture, scratch, "direct") as client:
                    results["direct"] = await measure(
                        client, "add", options.calls, options.concurrency
                    )
                host_argv = [*host, "--config", str(layout(scratch, "http")), *home]
                async with http_server(host_argv, scratch, "host") as client:
                    results["host"] = await measure(
                        client, "bench_add", options.calls, options.concurrency
                    )
            direct_p50 = statistics.median(results["direct"][0])
            for path_name, (latencies, throughput) in results.items():
                p50 = statistics.median(latencies)
                rows.append(
                    {
                        "transport": transport,
                        "path": path_name,
                        "p50_ms": round(p50 * 1000, 3),
                        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
                        "calls_per_s": round(throughput, 1),
                        "p50_ratio_vs_direct": round(p50 / direct_p50, 2),
                        "p50_added_ms": round((p50 - direct_p50) * 1000, 3),
                    }
                )
    print(
        f"{'transport':9} {'path':6} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9} "
        f"{'ratio':>6} {'added ms':>9}"
    )
    for row in rows:
        print(
            f"{row['transport']:9} {row['path']:6} {row['p50_ms']:>8} {row['p99_ms']:>8} "
            f"{row['calls_per_s']:>9} {row['p50_ratio_vs_direct']:>6} {row['p50_added_ms']:>9}"
        )
    for row in rows:
        print(json.dumps({"bench": "host_overhead", **row}))


if __name__ == "__main__":
    anyio.run(main)
