"""Acceptance test 21 of spec/scheduler.md section 6 (reduced to 10 iterations to keep the
suite inside its time budget): random SIGKILLs during a mixed load, then the invariants."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from aios_scheduler.lifecycle import replay
from tests.scheduler.support import kill_stdio_scheduler, ok, stdio_scheduler

pytestmark = pytest.mark.anyio

ITERATIONS = 10
CLIENTS = ["c0", "c1", "c2", "c3"]
STAGES = [
    {"name": "source", "publishes": ["tick"]},
    {"name": "sink", "subscribes": ["tick"], "publishes": []},
]


async def _prepare(client: Client) -> str:
    for name in CLIENTS:
        await ok(client, "register_client", client_id=name, tier="marketplace", credits=10_000)
    for agent in ("a", "b"):
        await ok(client, "register_agent", agent_id=agent, profile={"name": "w"})
    return str((await ok(client, "create_pipeline", name="soak", stages=STAGES))["pipeline_id"])


async def _load(client: Client, rng: random.Random, pipeline: str, acked: set[str]) -> None:
    """Submit, dispatch, run steps, complete and publish until the server dies."""
    leases: dict[str, tuple[str, str]] = {}
    while True:
        choice = rng.random()
        if choice < 0.35:
            job = await ok(
                client,
                "submit_job",
                client_id=rng.choice(CLIENTS),
                task="t",
                cost=rng.choice([0.5, 1, 2]),
            )
            acked.add(job["job_id"])
        elif choice < 0.55:
            agent = rng.choice(["a", "b"])
            if agent not in leases:
                leased = await ok(client, "dispatch_next", agent_id=agent)
                if leased["job"] is not None:
                    leases[agent] = (leased["job"]["job_id"], leased["lease_id"])
        elif choice < 0.75 and leases:
            agent = rng.choice(sorted(leases))
            job_id, lease = leases[agent]
            step = f"s{rng.randrange(4)}"
            begun = await ok(client, "step_begin", job_id=job_id, lease_id=lease, step_id=step)
            if not begun["cached"]:
                await ok(
                    client,
                    "step_complete",
                    job_id=job_id,
                    lease_id=lease,
                    step_id=step,
                    result=step,
                    elapsed_ms=1,
                )
        elif choice < 0.85 and leases:
            agent = rng.choice(sorted(leases))
            job_id, lease = leases.pop(agent)
            await ok(client, "complete_job", job_id=job_id, lease_id=lease, result="done")
        else:
            await ok(
                client,
                "publish_event",
                pipeline_id=pipeline,
                stage="source",
                event_type="tick",
                data={},
            )


def _check_invariants(database: Path, acked: set[str]) -> None:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        jobs = {
            row[0]: json.loads(row[1])
            for row in connection.execute("SELECT job_id, body FROM jobs")
        }
        assert acked <= set(jobs), acked - set(jobs)
        for job_id, job in jobs.items():
            rows = connection.execute(
                "SELECT from_state, to_state FROM transitions WHERE job_id = ? ORDER BY id",
                (job_id,),
            ).fetchall()
            assert replay([(row[0], row[1]) for row in rows]) == job["state"], job_id
            if job["state"] in ("running", "checkpointed", "waiting_approval"):
                assert job["lease_id"] and job["assigned_agent_id"], job
        for (body,) in connection.execute("SELECT body FROM clients"):
            client: dict[str, Any] = json.loads(body)
            (total,) = connection.execute(
                "SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE client_id = ?",
                (client["client_id"],),
            ).fetchone()
            reserved = sum(
                job["cost"]
                for job in jobs.values()
                if job["client_id"] == client["client_id"]
                and job["state"] == "pending"
                and not job["charged"]
            )
            assert client["balance"] == pytest.approx(total), client
            assert client["reserved"] == pytest.approx(reserved), client
        sequences = [
            row[0] for row in connection.execute("SELECT sequence FROM events ORDER BY sequence")
        ]
        assert sequences == list(range(len(sequences)))
    finally:
        connection.close()


@pytest.mark.slow
async def test_random_kills_under_load_keep_every_invariant(tmp_path: Path) -> None:
    """Each iteration SIGKILLs the server at a random moment of a mixed load (4 clients:
    submit, dispatch, steps, complete, publish), restarts it, and checks: every acknowledged
    submit exists; each job's transition log replays to its state; bound jobs hold a lease
    and an agent; balance equals the ledger and reserved the cost of never-charged pending
    jobs; event sequences are gap-free."""
    rng = random.Random(21)
    acked: set[str] = set()
    pipeline = ""
    for iteration in range(ITERATIONS):
        with pytest.raises((MCPError, ExceptionGroup)):
            async with stdio_scheduler(tmp_path) as client:
                if iteration == 0:
                    pipeline = await _prepare(client)
                async with anyio.create_task_group() as group:

                    async def killer(delay_s: float) -> None:
                        await anyio.sleep(delay_s)
                        kill_stdio_scheduler(tmp_path)

                    group.start_soon(killer, rng.uniform(0.05, 0.4))
                    await _load(client, rng, pipeline, acked)
        async with stdio_scheduler(tmp_path) as client:
            stats = await ok(client, "get_stats")
        assert stats["clients"] == len(CLIENTS)
        _check_invariants(tmp_path / "scheduler.db", acked)
