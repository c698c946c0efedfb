"""Acceptance tests 19, 20, 22, 34 and 35 of spec/scheduler.md section 6: kill -9 of the real
server process (and of the worker), queue and cursor durability, idempotent retries."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.scheduler.support import (
    http_scheduler,
    kill_stdio_scheduler,
    ok,
    read_json,
    stdio_scheduler,
)

pytestmark = pytest.mark.anyio

STEPS = [f"s{n}" for n in range(1, 11)]


async def _run_steps(
    client: Client, job_id: str, lease: str, side_effects: Path, steps: list[str]
) -> list[bool]:
    """The worker: each step appends its id to a side-effect file before step_complete."""
    cached = []
    for step in steps:
        begun = await ok(client, "step_begin", job_id=job_id, lease_id=lease, step_id=step)
        cached.append(begun["cached"])
        if not begun["cached"]:
            with side_effects.open("a", encoding="utf-8") as handle:
                handle.write(step + "\n")
            await ok(
                client,
                "step_complete",
                job_id=job_id,
                lease_id=lease,
                step_id=step,
                result={"step": step},
                elapsed_ms=1,
            )
    return cached


async def _first_job(client: Client) -> tuple[str, str]:
    await ok(client, "register_client", client_id="c", tier="marketplace", credits=100)
    await ok(client, "register_agent", agent_id="a", profile={"name": "w"})
    await ok(client, "submit_job", client_id="c", task="ten steps")
    leased = await ok(client, "dispatch_next", agent_id="a")
    return leased["job"]["job_id"], leased["lease_id"]


async def test_killing_the_server_mid_job_reexecutes_no_completed_step(tmp_path: Path) -> None:
    """Test 19: SIGKILL the server after step_complete(s6) is acknowledged and restart it;
    the worker restarts from s1 with the same lease: s1-s6 cached, s7-s10 run, each step's
    side effect happens exactly once."""
    side_effects = tmp_path / "side_effects.txt"
    home = tmp_path / "home"
    with http_scheduler(home) as server:
        async with server.connect() as client:
            job_id, lease = await _first_job(client)
            await _run_steps(client, job_id, lease, side_effects, STEPS[:6])
        server.kill()
    with http_scheduler(home) as server:
        async with server.connect() as client:
            cached = await _run_steps(client, job_id, lease, side_effects, STEPS)
            done = await ok(client, "complete_job", job_id=job_id, lease_id=lease, result="ok")
    assert cached == [True] * 6 + [False] * 4
    assert side_effects.read_text().split() == STEPS
    assert done["job"]["state"] == "completed"
    assert done["job"]["metrics"]["steps_cached"] == 6


async def test_killing_server_and_worker_replays_the_memo_after_lease_expiry(
    tmp_path: Path,
) -> None:
    """Test 20: server and worker both die (the worker during s7); after lease expiry the job
    goes running -> failed -> pending (crash, pool restart 1); a new worker replays s1-s6
    and runs s7-s10; s7 happens at most twice, s1-s6 exactly once."""
    side_effects = tmp_path / "side_effects.txt"
    home = tmp_path / "home"
    with http_scheduler(home, "--test-mode") as server:
        async with server.connect() as client:
            job_id, lease = await _first_job(client)
            await _run_steps(client, job_id, lease, side_effects, STEPS[:6])
            await ok(client, "step_begin", job_id=job_id, lease_id=lease, step_id="s7")
            with side_effects.open("a", encoding="utf-8") as handle:
                handle.write("s7\n")
        server.kill()
    with http_scheduler(home, "--test-mode") as server:
        async with server.connect() as client:
            await ok(client, "test_advance_clock", seconds=30)
            job = await ok(client, "get_job", job_id=job_id)
            log = await read_json(client, f"scheduler://jobs/{job_id}/transitions")
            pool = await read_json(client, "scheduler://groups/pool")
            leased = await ok(client, "dispatch_next", agent_id="a")
            cached = await _run_steps(client, job_id, leased["lease_id"], side_effects, STEPS)
            await ok(client, "complete_job", job_id=job_id, lease_id=leased["lease_id"], result=1)
    lines = side_effects.read_text().split()
    assert job["state"] == "pending"
    assert [(r["from"], r["to"], r["reason"]) for r in log["transitions"][-2:]] == [
        ("running", "failed", "crash"),
        ("failed", "pending", "crash"),
    ]
    assert len(pool["restart_log"]) == 1
    assert cached == [True] * 6 + [False] * 4
    assert [lines.count(step) for step in STEPS[:6]] == [1] * 6
    assert 1 <= lines.count("s7") <= 2
    assert [lines.count(step) for step in STEPS[7:]] == [1] * 3


async def _feed(client: Client) -> None:
    for index in range(10):
        await ok(
            client,
            "register_client",
            client_id=f"c{index}",
            tier="marketplace",
            credits=1000 + 100 * index,
        )
    await ok(client, "register_agent", agent_id="a", profile={"name": "w"})
    for round_number in range(100):
        for index in range(10):
            await ok(
                client,
                "submit_job",
                client_id=f"c{index}",
                task=f"r{round_number}",
                cost=1 + (index % 3),
            )


async def _dispatch(client: Client, count: int) -> list[tuple[str, int]]:
    order = []
    for _ in range(count):
        leased = await ok(client, "dispatch_next", agent_id="a")
        job = leased["job"]
        order.append((job["client_id"], job["seq"]))
        await ok(
            client, "complete_job", job_id=job["job_id"], lease_id=leased["lease_id"], result=0
        )
    return order


@pytest.mark.slow
async def test_the_queue_survives_a_kill_job_for_job(tmp_path: Path) -> None:
    """Test 22: 1,000 jobs from 10 clients, 300 dispatched, SIGKILL, restart: the next 700
    dispatches equal those of an uncrashed control server fed the same calls."""
    fast = {"AIOS_SYNCHRONOUS": "NORMAL"}  # NORMAL survives a process kill (spec section 3.7)
    async with stdio_scheduler(tmp_path / "control", env=fast) as client:
        await _feed(client)
        expected = await _dispatch(client, 1000)
    crashed = tmp_path / "crashed"
    with pytest.raises((MCPError, ExceptionGroup)):
        async with stdio_scheduler(crashed, env=fast) as client:
            await _feed(client)
            before = await _dispatch(client, 300)
            kill_stdio_scheduler(crashed)
            await client.call_tool("get_stats", {})
    async with stdio_scheduler(crashed, env=fast) as client:
        after = await _dispatch(client, 700)
    assert before == expected[:300]
    assert after == expected[300:]


async def test_an_acked_cursor_survives_a_kill(tmp_path: Path) -> None:
    """Test 34: the observer acks up to sequence 3 of 10 events; after SIGKILL and restart it
    resumes at the first subscribed event after 3, with no gap and nothing acked again."""
    stages = [
        {"name": "source", "publishes": ["tick", "noise"]},
        {"name": "observer", "subscribes": ["tick"], "publishes": []},
    ]
    home = tmp_path / "home"
    with http_scheduler(home) as server:
        async with server.connect() as client:
            pipeline = (await ok(client, "create_pipeline", name="p", stages=stages))["pipeline_id"]
            for n in range(10):
                kind = "noise" if n % 3 == 1 else "tick"
                await ok(
                    client,
                    "publish_event",
                    pipeline_id=pipeline,
                    stage="source",
                    event_type=kind,
                    data={"n": n},
                )
            await ok(client, "ack_events", pipeline_id=pipeline, stage="observer", up_to_seq=3)
        server.kill()
    with http_scheduler(home) as server:
        async with server.connect() as client:
            resumed = await ok(client, "read_events", pipeline_id=pipeline, stage="observer")
    assert [event["sequence"] for event in resumed["events"]] == [5, 6, 8, 9]


async def test_retried_calls_return_the_first_result(tmp_path: Path) -> None:
    """Test 35: submit_job twice with one idempotency key gives one job and one reservation;
    dispatch_next retried with its request_id after a kill between commit and reply returns
    the same job and lease, and counts no restart."""
    home = tmp_path / "home"
    with http_scheduler(home, "--test-mode", "--crash-after-commit", "dispatch_next") as server:
        async with server.connect() as client:
            await ok(client, "register_client", client_id="c", tier="marketplace", credits=10)
            await ok(client, "register_agent", agent_id="a", profile={"name": "w"})
            first = await ok(client, "submit_job", client_id="c", task="t", idempotency_key="k1")
            second = await ok(client, "submit_job", client_id="c", task="t", idempotency_key="k1")
            reserved = (await read_json(client, "scheduler://clients/c"))["reserved"]
        with pytest.raises((MCPError, ExceptionGroup, httpx2.HTTPError)):
            async with server.connect() as client:
                await client.call_tool("dispatch_next", {"agent_id": "a", "request_id": "r1"})
        assert server.process.wait(10) == 137
    with http_scheduler(home, "--test-mode") as server:
        async with server.connect() as client:
            retried = await ok(client, "dispatch_next", agent_id="a", request_id="r1")
            again = await ok(client, "dispatch_next", agent_id="a", request_id="r1")
            agent = await read_json(client, "scheduler://agents/a")
    assert first["job_id"] == second["job_id"]
    assert reserved == 1
    assert retried["job"]["job_id"] == first["job_id"]
    assert again["lease_id"] == retried["lease_id"]
    assert agent["restart_count"] == 0
