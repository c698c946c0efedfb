"""The inference server as a real process: Streamable HTTP with a bearer token, configured by
AIOS_OLLAMA_URL alone, and a usage ledger that survives kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import REPO, stop, wait_for_file
from tests.inference.conftest import MODEL, Backend
from tests.inference.test_server import structured

pytestmark = pytest.mark.anyio

TOKEN = "inference-test-token"


@contextmanager
def inference_process(home: Path, ollama_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    ready = home / f"ready-{os.urandom(4).hex()}.json"
    log = (home / "server.log").open("ab")
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
        ],
        env={**os.environ, "AIOS_AUTH_TOKEN": TOKEN, "AIOS_OLLAMA_URL": ollama_url},
        cwd=str(REPO),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for_file(ready, process, 60, home / "server.log")
        yield json.loads(ready.read_text(encoding="utf-8"))["url"], process
    finally:
        stop(process)
        log.close()


async def _call(url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return structured(await client.call_tool(tool, arguments))


async def test_the_usage_ledger_survives_kill_9_of_the_server(
    tmp_path: Path, ollama: Backend
) -> None:
    """Every usage row a caller was told about is on disk: after SIGKILL and a restart the
    ledger holds the same rows (issue 6: metering, durably)."""
    told: list[dict[str, Any]] = []
    with inference_process(tmp_path, ollama.url) as (url, process):
        for index in range(2):
            result = await _call(
                url,
                "chat",
                {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": f"Say {index}."}],
                    "options": {"max_tokens": 4},
                    "agent_id": "agent-k",
                    "job_id": "job-k",
                },
            )
            told.append(result)
        process.kill()
        process.wait(10)
    with inference_process(tmp_path, ollama.url) as (url, _):
        page = await _call(url, "usage", {"job_id": "job-k"})
    assert [record["request_id"] for record in page["records"]] == [
        result["request_id"] for result in told
    ]
    assert [record["completion_tokens"] for record in page["records"]] == [
        result["usage"]["completion_tokens"] for result in told
    ]
    assert page["totals"]["calls"] == 2
    assert {record["agent_id"] for record in page["records"]} == {"agent-k"}
