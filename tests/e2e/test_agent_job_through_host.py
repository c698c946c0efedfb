"""The OS at work, end to end through the host: a client submits a job to the scheduler, a
supervised aios-agent worker runs its pipeline, and a step writes to the real memory server
through aios_shared.peers with the address and token the host handed out."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import http_host, write_layout

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AGENT = {
    "agent_id": "scribe-1",
    "profile": {"name": "scribe", "capabilities": ["scribe"]},
    "cost": 1.0,
    "group_id": "pool",
    "restart": "transient",
    "shutdown_s": 5,
    "steps": [
        {"id": "read", "kind": "echo"},
        {"id": "shout", "kind": "transform", "op": "upper", "source": "read"},
        {
            "id": "remember",
            "kind": "memory_write",
            "arguments": {
                "type": "fact",
                "data": {"assertion": "the scribe heard {steps.shout}"},
                "text": "the scribe heard {steps.shout}",
                "tags": ["e2e"],
            },
        },
    ],
}


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    content = result.structured_content
    assert isinstance(content, dict), content
    return content


async def test_a_job_runs_through_a_supervised_worker_and_writes_memory(tmp_path: Path) -> None:
    agent_file = tmp_path / "scribe.json"
    agent_file.write_text(json.dumps(AGENT), encoding="utf-8")
    layout = write_layout(
        tmp_path,
        [
            {"name": "memory", "module": "aios_memory", "transport": "http"},
            {
                "name": "scheduler",
                "module": "aios_scheduler",
                "transport": "http",
                "depends_on": ["memory"],
                "env": {"AIOS_AGENTS": json.dumps([str(agent_file)])},
            },
        ],
    )
    environment = {"AIOS_SHUTDOWN_GRACE_S": "1"}
    with http_host(layout, tmp_path / "home", {**os.environ, **environment}) as host:
        async with httpx2.AsyncClient(headers=host.headers(), timeout=60) as http:
            async with Client(streamable_http_client(host.url, http_client=http)) as client:
                await client.call_tool(
                    "scheduler_register_client",
                    {"client_id": "e2e", "tier": "contracted", "credits": 5},
                )
                submitted = structured(
                    await client.call_tool(
                        "scheduler_submit_job",
                        {"client_id": "e2e", "task": "scribe", "input": "hello os"},
                    )
                )
                job_id = submitted.get("job_id") or submitted["job"]["job_id"]
                finished = structured(
                    await client.call_tool(
                        "scheduler_wait_job",
                        {"job_id": job_id, "states": ["completed", "failed"], "timeout_s": 60},
                    )
                )
                found = structured(await client.call_tool("memory_search", {"query": "scribe"}))
    job = finished.get("job", finished)
    assert job["state"] == "completed", job
    hits = found["hits"]
    assert len(hits) == 1, found
    assert "HELLO OS" in json.dumps(hits[0])
