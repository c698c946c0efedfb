"""Acceptance tests 23-27 of spec/scheduler.md section 6: lease expiry, restart intensity,
strategies, restart types, isolation and halt; all on the test clock, over MCP stdio."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from tests.scheduler.support import ok, read_json, reason, refused, stdio_scheduler

pytestmark = pytest.mark.anyio


async def _setup(client: Client, *agents: str, group: str = "pool") -> None:
    stats = await ok(client, "get_stats")
    if stats["clients"] == 0:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=10_000)
    for agent in agents:
        await ok(
            client,
            "register_agent",
            agent_id=agent,
            profile={"name": "w"},
            group_id=group,
            shutdown_s=0,
        )


async def _lease(client: Client, agent: str) -> tuple[str, str]:
    leased = await ok(client, "dispatch_next", agent_id=agent)
    assert leased["job"] is not None, agent
    return leased["job"]["job_id"], leased["lease_id"]


async def test_an_expired_lease_requeues_the_job_with_its_memo(tmp_path: Path) -> None:
    """Test 23: TTL 2 s and no heartbeat: at 2.0 s plus one sweep the job is pending again,
    memo intact, restart_count 1; the old lease's heartbeat is lease_invalid{expired}."""
    environment = {"AIOS_LIMITS__LEASE_TTL_S": "2"}
    async with stdio_scheduler(tmp_path, "--test-mode", env=environment) as client:
        await _setup(client, "a")
        await ok(client, "submit_job", client_id="c", task="work")
        job_id, lease = await _lease(client, "a")
        await ok(client, "step_begin", job_id=job_id, lease_id=lease, step_id="s1")
        await ok(
            client,
            "step_complete",
            job_id=job_id,
            lease_id=lease,
            step_id="s1",
            result=1,
            elapsed_ms=1,
        )
        await ok(client, "test_advance_clock", seconds=1.999)
        alive = await ok(client, "get_job", job_id=job_id)
        await ok(client, "test_advance_clock", seconds=0.001)
        job = await ok(client, "get_job", job_id=job_id)
        steps = await read_json(client, f"scheduler://jobs/{job_id}/steps")
        agent = await read_json(client, "scheduler://agents/a")
        old = await refused(client, "heartbeat", job_id=job_id, lease_id=lease)
        log = await read_json(client, f"scheduler://jobs/{job_id}/transitions")
    assert alive["state"] == "running"
    assert job["state"] == "pending"
    assert [step["step_id"] for step in steps["steps"]] == ["s1"]
    assert agent["restart_count"] == 1
    assert (reason(old), old["details"]["lease"]) == ("lease_invalid", "expired")
    assert [(row["from"], row["to"], row["reason"]) for row in log["transitions"][-2:]] == [
        ("running", "failed", "crash"),
        ("failed", "pending", "crash"),
    ]


async def _crash_series(client: Client, last_at_s: int) -> dict[str, object]:
    """Pool 5/60: crashes of agent a at t = 0, 10, 20, 30, 40 and then ``last_at_s``."""
    await _setup(client, "a", "b")
    await ok(client, "submit_job", client_id="c", task="crashy")
    await ok(client, "submit_job", client_id="c", task="bystander")
    job_id, _ = await _lease(client, "a")
    bystander, bystander_lease = await _lease(client, "b")
    states = []
    elapsed = 0
    for at in (0, 10, 20, 30, 40, last_at_s):
        await ok(client, "test_advance_clock", seconds=at - elapsed)
        elapsed = at
        if at:
            await ok(client, "heartbeat", job_id=bystander, lease_id=bystander_lease)
            assert (await _lease(client, "a"))[0] == job_id
        exit_report = await ok(client, "report_exit", agent_id="a", exit_code=1, reason="crash")
        states.append(exit_report["job_state"])
    return {
        "states": states,
        "group_status": exit_report["group_status"],
        "job": await ok(client, "get_job", job_id=job_id),
        "bystander": await ok(client, "get_job", job_id=bystander),
        "pool": await read_json(client, "scheduler://groups/pool"),
        "root": await read_json(client, "scheduler://groups/root"),
    }


async def test_six_crashes_in_sixty_seconds_terminate_the_pool(tmp_path: Path) -> None:
    """Test 24: crashes at 0..40 requeue; one at t = 60 (inclusive window) terminates the
    pool: bound jobs fail (restart_intensity_exceeded), root logs 1, pool restarts."""
    async with stdio_scheduler(tmp_path, "--test-mode") as client:
        outcome = await _crash_series(client, 60)
    assert outcome["states"] == ["pending"] * 5 + ["failed"]
    job = outcome["job"]
    bystander = outcome["bystander"]
    assert isinstance(job, dict) and isinstance(bystander, dict)
    assert job["error"]["kind"] == "restart_intensity_exceeded"
    assert bystander["state"] == "failed"
    assert bystander["error"]["kind"] == "restart_intensity_exceeded"
    pool, root = outcome["pool"], outcome["root"]
    assert isinstance(pool, dict) and isinstance(root, dict)
    assert (pool["status"], pool["restart_log"]) == ("active", [])
    assert len(root["restart_log"]) == 1


async def test_the_sixth_crash_at_sixty_one_seconds_does_not_terminate(tmp_path: Path) -> None:
    """Test 24: the same series with the last crash at t = 61: only five crashes fall in
    [1 s, 61 s], so the job is requeued again and root logs nothing."""
    async with stdio_scheduler(tmp_path, "--test-mode") as client:
        outcome = await _crash_series(client, 61)
    assert outcome["states"] == ["pending"] * 6
    bystander, root = outcome["bystander"], outcome["root"]
    assert isinstance(bystander, dict) and isinstance(root, dict)
    assert bystander["state"] == "running"
    assert root["restart_log"] == []


@pytest.mark.parametrize(
    ("strategy", "requeued"),
    [
        pytest.param("one_for_one", ["a2"], id="one_for_one"),
        pytest.param("rest_for_one", ["a2", "a3"], id="rest_for_one"),
        pytest.param("one_for_all", ["a1", "a2", "a3"], id="one_for_all"),
    ],
)
async def test_strategies_choose_which_siblings_restart(
    tmp_path: Path, strategy: str, requeued: list[str]
) -> None:
    """Test 25: a2 of (a1, a2, a3) crashes; the strategy decides whose jobs are requeued;
    memo is kept, retry_count unchanged, untouched siblings keep valid leases."""
    async with stdio_scheduler(tmp_path, "--test-mode") as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=100)
        await ok(client, "create_group", group_id="team", strategy=strategy)
        await _setup(client, "a1", "a2", "a3", group="team")
        leases = {}
        for agent in ("a1", "a2", "a3"):
            await ok(client, "submit_job", client_id="c", task=agent)
            job_id, lease = await _lease(client, agent)
            await ok(client, "step_begin", job_id=job_id, lease_id=lease, step_id="s")
            await ok(
                client,
                "step_complete",
                job_id=job_id,
                lease_id=lease,
                step_id="s",
                result=agent,
                elapsed_ms=1,
            )
            leases[agent] = (job_id, lease)
        report = await ok(client, "report_exit", agent_id="a2", exit_code=137, reason="killed")
        jobs = {
            agent: await ok(client, "get_job", job_id=job) for agent, (job, _) in leases.items()
        }
        memo = {
            agent: await read_json(client, f"scheduler://jobs/{job}/steps")
            for agent, (job, _) in leases.items()
        }
        alive = [
            agent
            for agent, (job, lease) in leases.items()
            if not (
                await client.call_tool("heartbeat", {"job_id": job, "lease_id": lease})
            ).is_error
        ]
    assert sorted(report["restarted"]) == requeued
    assert sorted(agent for agent, job in jobs.items() if job["state"] == "pending") == requeued
    assert sorted(alive) == sorted({"a1", "a2", "a3"} - set(requeued))
    assert all(job["retry_count"] == 0 for job in jobs.values())
    assert all(len(steps["steps"]) == 1 for steps in memo.values())


async def test_restart_types_decide_what_an_exit_does(tmp_path: Path) -> None:
    """Test 26: temporary + crash -> job failed (crash), agent stopped; transient + clean exit
    -> failed (exited_without_result), no restart; permanent + clean exit -> requeued."""
    async with stdio_scheduler(tmp_path, "--test-mode") as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=100)
        outcomes = {}
        for restart, exit_code in (("temporary", 1), ("transient", 0), ("permanent", 0)):
            await ok(
                client,
                "register_agent",
                agent_id=restart,
                profile={"name": "w"},
                restart=restart,
                shutdown_s=0,
            )
            await ok(client, "submit_job", client_id="c", task=restart, agent_id=restart)
            job_id, _ = await _lease(client, restart)
            report = await ok(client, "report_exit", agent_id=restart, exit_code=exit_code)
            job = await ok(client, "get_job", job_id=job_id)
            agent = await read_json(client, f"scheduler://agents/{restart}")
            outcomes[restart] = (
                report["job_state"],
                (job["error"] or {}).get("kind"),
                agent["status"],
                agent["restart_count"],
            )
        pool = await read_json(client, "scheduler://groups/pool")
    assert outcomes == {
        "temporary": ("failed", "crash", "stopped", 0),
        "transient": ("failed", "exited_without_result", "idle", 0),
        "permanent": ("pending", "exited_without_result", "idle", 0),
    }
    assert pool["restart_log"] == []


async def test_a_crash_loop_is_isolated_and_root_halts_past_its_intensity(tmp_path: Path) -> None:
    """Test 27: G1 crash-looping past its intensity leaves G2's running job and lease alone;
    eleven group terminations in 60 s halt root (supervisor_halted) until reset_group."""
    async with stdio_scheduler(tmp_path, "--test-mode") as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=100)
        await ok(client, "create_group", group_id="g1", strategy="one_for_all", restarts_max=0)
        await ok(client, "create_group", group_id="g2", strategy="one_for_all")
        await _setup(client, "loop", group="g1")
        await _setup(client, "steady", group="g2")
        await ok(client, "submit_job", client_id="c", task="steady", agent_id="steady")
        job_id, lease = await _lease(client, "steady")
        statuses = [
            (await ok(client, "report_exit", agent_id="loop"))["group_status"] for _ in range(10)
        ]
        untouched = await ok(client, "heartbeat", job_id=job_id, lease_id=lease)
        running = await ok(client, "get_job", job_id=job_id)
        await ok(client, "report_exit", agent_id="loop")
        halted = await refused(client, "dispatch_next", agent_id="steady")
        stats = await ok(client, "get_stats")
        await ok(client, "reset_group", group_id="root")
        resumed = await client.call_tool("dispatch_next", {"agent_id": "loop"})
    assert statuses == ["active"] * 10
    assert untouched["shutdown_requested"] is False
    assert running["state"] == "running"
    assert reason(halted) == "supervisor_halted"
    assert stats["halted"] is True
    assert not resumed.is_error
