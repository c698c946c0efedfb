"""What the inference server adds to a model call, and what its queue does under load.

Measured in one run against a real llama.cpp server (gemma-3-270m, from
scripts/setup-inference-backends.sh), three ways to the same backend:
  direct   httpx streaming straight to llama.cpp's /v1/chat/completions
  service  InferenceService.generate in-process (routing, gate, ledger write with fsync)
  mcp      a real aios-inference process over Streamable HTTP, chunks as progress notifications

Prints p50 per request (1 token), p50 time to first token and per streamed token (32 tokens),
and the overhead versus direct. Targets (issue 6): at most +2 ms per request, first token at
most +1 ms later. Then throughput of a burst of concurrent requests with the per-model queue
sized to the backend's slots versus no queue (everything sent straight to the backend).

    uv run python bench/inference.py [--requests 30] [--burst 16]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aios_inference.config import BackendConfig, InferenceSettings, ModelConfig
from aios_inference.models import ChatMessage
from aios_inference.service import Caller, InferenceService, Request

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / ".tools" / "inference"
MODEL = "gemma3-270m"
TOKEN = "bench-token"
PROMPT = "Write a short story about a lighthouse keeper."

# One timing: (seconds to the whole answer, seconds to the first chunk, chunk arrival times).
Timing = tuple[float, float, list[float]]
Probe = Callable[[int], Awaitable[Timing]]


@asynccontextmanager
async def llama_server(log: Path, slots: int) -> AsyncIterator[str]:
    """llama.cpp's server (from scripts/setup-inference-backends.sh) on a free loopback port."""
    if not (TOOLS / "stamp").exists():
        raise SystemExit("run scripts/setup-inference-backends.sh first (make bench does)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = TOOLS / "models" / "gemma-3-270m-q4_k_m.gguf"
    argv = [str(TOOLS / "llama-server"), "-m", str(model), "--alias", MODEL, "--host"]
    argv += ["127.0.0.1", "--port", str(port), "-c", "4096", "--parallel", str(slots), "-t", "2"]
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await http.get(f"{url}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"llama-server did not start; see {log}")
                await anyio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def registry(concurrency_max: int) -> list[ModelConfig]:
    return [
        ModelConfig(
            name="gemma",
            backend="llamacpp",
            backend_model=MODEL,
            concurrency_max=concurrency_max,
            queue_depth_max=1024,
        )
    ]


def settings_for(home: Path, llama_url: str, concurrency_max: int) -> InferenceSettings:
    return InferenceSettings(
        home=home,
        default_backend=False,
        backends=[BackendConfig(name="llamacpp", kind="openai", url=llama_url)],
        models=registry(concurrency_max),
    )


async def direct_probe(http: httpx.AsyncClient, url: str, tokens: int) -> Timing:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    request = http.build_request("POST", f"{url}/v1/chat/completions", json=body)
    try:
        response = await http.send(request, stream=True)
    except httpx.RemoteProtocolError:  # the same one resend the backend does (llama.cpp race)
        response = await http.send(request, stream=True)
    try:
        arrivals = [
            time.perf_counter() - started
            async for line in response.aiter_lines()
            if line.startswith("data:") and '"content":"' in line
        ]
    finally:
        await response.aclose()
    return time.perf_counter() - started, arrivals[0] if arrivals else 0.0, arrivals


async def service_probe(service: InferenceService, tokens: int) -> Timing:
    arrivals: list[float] = []
    started = time.perf_counter()

    async def on_text(text: str) -> None:
        arrivals.append(time.perf_counter() - started)

    request = Request(
        model="gemma",
        messages=[ChatMessage(role="user", content=PROMPT)],
        options={"max_tokens": tokens},
    )
    await service.generate(request, Caller(caller="bench"), on_text)
    return time.perf_counter() - started, arrivals[0] if arrivals else 0.0, arrivals


async def mcp_probe(client: Client, tokens: int) -> Timing:
    arrivals: list[float] = []
    started = time.perf_counter()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        arrivals.append(time.perf_counter() - started)

    arguments: dict[str, Any] = {
        "model": "gemma",
        "messages": [{"role": "user", "content": PROMPT}],
        "options": {"max_tokens": tokens},
    }
    result = await client.call_tool("chat", arguments, progress_callback=on_progress)
    assert not result.is_error, result
    return time.perf_counter() - started, arrivals[0] if arrivals else 0.0, arrivals


@asynccontextmanager
async def mcp_server(home: Path, llama_url: str) -> AsyncIterator[Client]:
    ready = home / "ready.json"
    environment = {
        **os.environ,
        "AIOS_AUTH_TOKEN": TOKEN,
        "AIOS_DEFAULT_BACKEND": "false",
        "AIOS_BACKENDS": json.dumps([{"name": "llamacpp", "kind": "openai", "url": llama_url}]),
        "AIOS_MODELS": json.dumps([model.model_dump() for model in registry(64)]),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aios_inference",
            "--transport",
            "http",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--home",
            str(home),
            "--log-level",
            "warning",
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"aios-inference did not start (exit {process.returncode})")
            await anyio.sleep(0.05)
        url = json.loads(ready.read_text())["url"]
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                yield client
    finally:
        process.terminate()
        process.wait(10)


def per_token_ms(timing: Timing) -> float:
    arrivals = timing[2]
    if len(arrivals) < 2:
        return 0.0
    return (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1) * 1000


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


async def overhead_table(probes: dict[str, Probe], count: int) -> None:
    """Interleave the paths request by request, so drift in the machine hits all alike."""
    single: dict[str, list[Timing]] = {name: [] for name in probes}
    streamed: dict[str, list[Timing]] = {name: [] for name in probes}
    for probe in probes.values():
        await probe(1)  # warm-up
    for _ in range(count):
        for name, probe in probes.items():
            single[name].append(await probe(1))
            streamed[name].append(await probe(32))
    print(f"{'path':<8} {'request p50':>12} {'first token p50':>16} {'per token p50':>14}")
    baseline: tuple[float, float, float] | None = None
    for name in probes:
        row = (
            median_ms([timing[0] for timing in single[name]]),
            median_ms([timing[1] for timing in streamed[name]]),
            statistics.median(per_token_ms(timing) for timing in streamed[name]),
        )
        extra = ""
        if baseline is None:
            baseline = row
        else:
            extra = (
                f"   ({row[0] - baseline[0]:+.2f} ms/request, {row[1] - baseline[1]:+.2f} ms "
                f"first token, {row[2] - baseline[2]:+.3f} ms/token)"
            )
        print(f"{name:<8} {row[0]:>9.2f} ms {row[1]:>13.2f} ms {row[2]:>11.3f} ms{extra}")


async def burst(service: InferenceService, size: int) -> tuple[float, float]:
    latencies: list[float] = []
    started = time.perf_counter()

    async def one() -> None:
        began = time.perf_counter()
        await service_probe(service, 16)
        latencies.append(time.perf_counter() - began)

    async with anyio.create_task_group() as group:
        for _ in range(size):
            group.start_soon(one)
    elapsed = time.perf_counter() - started
    return size / elapsed, max(latencies)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--burst", type=int, default=16)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        async with llama_server(scratch / "llama.log", slots=2) as llama_url:
            limits = httpx.Limits(keepalive_expiry=2.0)  # as the backend does (llama.cpp: 5 s)
            async with (
                httpx.AsyncClient(timeout=120, limits=limits) as http,
                InferenceService.open(settings_for(scratch / "a", llama_url, 64)) as service,
                mcp_server(scratch / "b", llama_url) as client,
            ):
                print(f"Overhead, llama.cpp gemma-3-270m, {arguments.requests} requests each:")
                await overhead_table(
                    {
                        "direct": lambda tokens: direct_probe(http, llama_url, tokens),
                        "service": lambda tokens: service_probe(service, tokens),
                        "mcp": lambda tokens: mcp_probe(client, tokens),
                    },
                    arguments.requests,
                )
            print(f"\nBurst of {arguments.burst} concurrent requests, 16 tokens, 2 backend slots:")
            for label, limit in (("queue (concurrency_max=2)", 2), ("no queue (64)", 64)):
                home = scratch / f"burst-{limit}"
                async with InferenceService.open(settings_for(home, llama_url, limit)) as service:
                    await service_probe(service, 1)
                    rate, worst = await burst(service, arguments.burst)
                print(f"{label:<26} {rate:6.2f} requests/s   slowest {worst * 1000:8.1f} ms")


if __name__ == "__main__":
    anyio.run(main)
