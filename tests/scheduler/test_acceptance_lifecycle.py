"""Acceptance tests 12-18 of spec/scheduler.md section 6: the legal path, illegal transitions,
cancel, approvals, oversight gates, recovery mapping and memoization, over MCP stdio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from aios_scheduler.config import SchedulerSettings
from aios_scheduler.lifecycle import replay
from aios_scheduler.models import AgentProfile
from aios_scheduler.service import SchedulerService, spot_check_draw
from tests.scheduler.support import (
    memory_scheduler,
    ok,
    read_json,
    reason,
    refused,
    stdio_scheduler,
)

pytestmark = pytest.mark.anyio


async def _running(
    client: Client, oversight: str = "autonomous_escalation", **job: Any
) -> tuple[str, str]:
    """Register c and agent a (if needed), submit one job and lease it: (job_id, lease_id)."""
    stats = await ok(client, "get_stats")
    if stats["clients"] == 0:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=100_000)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
    submitted = await ok(
        client, "submit_job", client_id="c", task="work", oversight=oversight, **job
    )
    leased = await ok(client, "dispatch_next", agent_id="a")
    assert leased["job"]["job_id"] == submitted["job_id"]
    return submitted["job_id"], leased["lease_id"]


async def test_the_legal_path_is_logged_and_replays_to_completed(tmp_path: Path) -> None:
    """Test 12: submit, dispatch, checkpoint, resume, approval (supervised), approve,
    complete follow T1 T4 T7 T3 T8 T5; seven log rows replay to completed."""
    async with stdio_scheduler(tmp_path) as client:
        job_id, lease = await _running(client, "supervised")
        states = [(await ok(client, "checkpoint_job", job_id=job_id, lease_id=lease))["state"]]
        states.append((await ok(client, "resume_job", job_id=job_id, lease_id=lease))["state"])
        asked = await ok(client, "request_approval", job_id=job_id, lease_id=lease, artifact="x")
        states.append(asked["state"])
        states.append(
            (await ok(client, "respond_approval", job_id=job_id, decision="approve"))["state"]
        )
        done = await ok(client, "complete_job", job_id=job_id, lease_id=lease, result={"ok": 1})
        states.append(done["job"]["state"])
        log = await read_json(client, f"scheduler://jobs/{job_id}/transitions")
    rows = log["transitions"]
    assert asked["gated"] is True
    assert states == ["checkpointed", "running", "waiting_approval", "running", "completed"]
    assert len(rows) == 7
    assert [(row["from"], row["to"]) for row in rows] == [
        (None, "pending"),
        ("pending", "running"),
        ("running", "checkpointed"),
        ("checkpointed", "running"),
        ("running", "waiting_approval"),
        ("waiting_approval", "running"),
        ("running", "completed"),
    ]
    assert replay([(row["from"], row["to"]) for row in rows]) == "completed"


async def test_illegal_transitions_are_refused_and_change_nothing(tmp_path: Path) -> None:
    """Test 13: complete on pending, checkpoint on waiting_approval, respond on running,
    resume on running, complete on checkpointed, mutations on completed: invalid_state with
    current/expected, state unchanged; dispatch to a busy agent: agent_busy."""
    async with stdio_scheduler(tmp_path) as client:
        job_id, lease = await _running(client, "supervised")
        pending = await ok(client, "submit_job", client_id="c", task="later")
        errors = {
            "respond_on_running": await refused(
                client, "respond_approval", job_id=job_id, decision="approve"
            ),
            "resume_on_running": await refused(client, "resume_job", job_id=job_id, lease_id=lease),
        }
        busy = await refused(client, "dispatch_next", agent_id="a")
        await ok(client, "request_approval", job_id=job_id, lease_id=lease, artifact="x")
        errors["checkpoint_on_waiting"] = await refused(
            client, "checkpoint_job", job_id=job_id, lease_id=lease
        )
        await ok(client, "respond_approval", job_id=job_id, decision="approve")
        await ok(client, "checkpoint_job", job_id=job_id, lease_id=lease)
        errors["complete_on_checkpointed"] = await refused(
            client, "complete_job", job_id=job_id, lease_id=lease, result={}
        )
        checkpointed = await ok(client, "get_job", job_id=job_id)
        await ok(client, "resume_job", job_id=job_id, lease_id=lease)
        await ok(client, "complete_job", job_id=job_id, lease_id=lease, result={})
        errors["cancel_on_completed"] = await refused(client, "cancel_job", job_id=job_id)
        errors["complete_on_completed"] = await refused(
            client, "complete_job", job_id=job_id, lease_id=lease, result={}
        )
        errors["retry_on_completed"] = await refused(client, "retry_job", job_id=job_id)
        errors["respond_on_completed"] = await refused(
            client, "respond_approval", job_id=job_id, decision="reject"
        )
        leased = await ok(client, "dispatch_next", agent_id="a")
        errors["complete_with_wrong_job_lease"] = await refused(
            client, "complete_job", job_id=pending["job_id"], lease_id="lease_0", result={}
        )
        completed = await ok(client, "get_job", job_id=job_id)
    assert busy["code"] == "conflict"
    assert reason(busy) == "agent_busy"
    assert checkpointed["state"] == "checkpointed"
    assert completed["state"] == "completed"
    assert leased["job"]["job_id"] == pending["job_id"]
    currents = {
        name: (reason(error), error["details"].get("current")) for name, error in errors.items()
    }
    assert currents == {
        "respond_on_running": ("invalid_state", "running"),
        "resume_on_running": ("invalid_state", "running"),
        "checkpoint_on_waiting": ("invalid_state", "waiting_approval"),
        "complete_on_checkpointed": ("invalid_state", "checkpointed"),
        "cancel_on_completed": ("invalid_state", "completed"),
        "complete_on_completed": ("invalid_state", "completed"),
        "retry_on_completed": ("invalid_state", "completed"),
        "respond_on_completed": ("invalid_state", "completed"),
        "complete_with_wrong_job_lease": ("lease_invalid", None),
    }
    assert all(
        error["details"].get("expected") for name, error in errors.items() if "lease" not in name
    )


async def test_complete_on_a_pending_job_is_an_invalid_state(tmp_path: Path) -> None:
    """Test 13: a pending job holds no lease; completing it is invalid_state naming the
    current state (pending) and the expected one (running), and nothing changes."""
    async with memory_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=10)
        job = await ok(client, "submit_job", client_id="c", task="t")
        error = await refused(client, "complete_job", job_id=job["job_id"], lease_id="x", result={})
        state = await ok(client, "get_job", job_id=job["job_id"])
    assert reason(error) == "invalid_state"
    assert (error["details"]["current"], error["details"]["expected"]) == ("pending", ["running"])
    assert state["state"] == "pending"


async def test_cancel_wins_over_a_late_completion(tmp_path: Path) -> None:
    """Test 14 (D15): a cancelled running job stays cancelled; the worker's later complete
    with the old lease is lease_invalid{revoked}; the agent is idle; cancelling a completed
    job is invalid_state."""
    async with stdio_scheduler(tmp_path) as client:
        job_id, lease = await _running(client)
        cancelled = await ok(client, "cancel_job", job_id=job_id, reason="client changed mind")
        late = await refused(client, "complete_job", job_id=job_id, lease_id=lease, result={})
        state = await ok(client, "get_job", job_id=job_id)
        agent = await read_json(client, "scheduler://agents/a")
        other, other_lease = await _running(client)
        await ok(client, "complete_job", job_id=other, lease_id=other_lease, result={})
        again = await refused(client, "cancel_job", job_id=other)
    assert cancelled["state"] == "cancelled"
    assert reason(late) == "lease_invalid"
    assert late["details"]["lease"] == "revoked"
    assert state["state"] == "cancelled"
    assert agent["status"] == "idle"
    assert reason(again) == "invalid_state"


async def test_rejection_requeues_with_feedback_until_retries_run_out(tmp_path: Path) -> None:
    """Test 15: retries_max 1, supervised: reject -> pending, retry_count 1, memo empty,
    feedback on re-dispatch; second reject -> failed (human_rejection); retry_job refused."""
    async with stdio_scheduler(tmp_path) as client:
        job_id, lease = await _running(client, "supervised", retries_max=1)
        await ok(client, "step_begin", job_id=job_id, lease_id=lease, step_id="draft")
        await ok(
            client,
            "step_complete",
            job_id=job_id,
            lease_id=lease,
            step_id="draft",
            result={"text": "v1"},
            elapsed_ms=3,
        )
        await ok(client, "request_approval", job_id=job_id, lease_id=lease, artifact="v1")
        rejected = await ok(
            client, "respond_approval", job_id=job_id, decision="reject", feedback="needs work"
        )
        memo = await read_json(client, f"scheduler://jobs/{job_id}/steps")
        stats = await ok(client, "get_stats")
        again = await ok(client, "dispatch_next", agent_id="a")
        fresh = await ok(
            client, "step_begin", job_id=job_id, lease_id=again["lease_id"], step_id="draft"
        )
        await ok(
            client, "request_approval", job_id=job_id, lease_id=again["lease_id"], artifact="v2"
        )
        final = await ok(
            client, "respond_approval", job_id=job_id, decision="reject", feedback="no"
        )
        exhausted = await refused(client, "retry_job", job_id=job_id)
    assert (rejected["state"], rejected["retry_count"]) == ("pending", 1)
    assert memo["steps"] == []
    assert stats["queue_size"] == 1
    assert again["feedback"] == ["needs work"]
    assert fresh["cached"] is False
    assert final["state"] == "failed"
    assert final["error"]["kind"] == "human_rejection"
    assert reason(exhausted) == "retries_exhausted"


async def _gate_fraction(client: Client, oversight: str, requests: int) -> tuple[int, list[bool]]:
    job_id, lease = await _running(client, oversight)
    decisions = []
    for _ in range(requests):
        asked = await ok(client, "request_approval", job_id=job_id, lease_id=lease, artifact={})
        decisions.append(asked["gated"])
        if asked["gated"]:
            await ok(client, "respond_approval", job_id=job_id, decision="approve")
    await ok(client, "complete_job", job_id=job_id, lease_id=lease, result={})
    return sum(decisions), decisions


async def test_supervised_and_escalating_oversight_always_gate(tmp_path: Path) -> None:
    """Test 16: supervised and autonomous_escalation gate 100 of 100 requests."""
    async with stdio_scheduler(tmp_path) as client:
        supervised, _ = await _gate_fraction(client, "supervised", 100)
        escalating, _ = await _gate_fraction(client, "autonomous_escalation", 100)
    assert (supervised, escalating) == (100, 100)


async def test_spot_checks_follow_the_seeded_rule_across_a_restart(tmp_path: Path) -> None:
    """Test 16: every spot-check decision equals the SHA-256 rule with the persisted seed,
    also for requests issued after a restart (1,000 requests over stdio)."""
    async with stdio_scheduler(tmp_path, "--test-mode") as client:
        seed = (await read_json(client, "scheduler://config"))["seed"]
        _, decisions = await _gate_fraction(client, "spot_check", 900)
        jobs = await ok(client, "list_jobs", client_id="c")
    async with stdio_scheduler(tmp_path, "--test-mode") as client:
        reread = (await read_json(client, "scheduler://config"))["seed"]
        _, tail = await _gate_fraction(client, "spot_check", 100)
        more = await ok(client, "list_jobs", client_id="c")
    first, second = jobs["jobs"][0]["job_id"], more["jobs"][1]["job_id"]
    assert reread == seed
    assert decisions == [spot_check_draw(first, n, seed) < 0.3 for n in range(1, 901)]
    assert tail == [spot_check_draw(second, n, seed) < 0.3 for n in range(1, 101)]


async def test_spot_checks_gate_thirty_percent_of_ten_thousand_requests(tmp_path: Path) -> None:
    """Test 16: over 10,000 spot-check requests (gated ones approved, then the next request)
    the gated fraction is 0.300 +- 0.015. Runs on the service API (no transport) with
    synchronous=NORMAL to keep the suite fast; the stdio test above pins each decision."""
    settings = SchedulerSettings(home=tmp_path, synchronous="NORMAL")
    async with SchedulerService.open(settings) as service:
        await service.register_client("c", "marketplace", 10.0)
        await service.register_agent(
            "a", AgentProfile(name="w"), 1.0, "spot_check", "pool", "transient", 0.0
        )
        job = await service.submit_job({"client_id": "c", "task": "t", "oversight": "spot_check"})
        leased = await service.dispatch_next("a")
        assert leased.lease_id is not None
        gated = 0
        for _ in range(10_000):
            asked = await service.request_approval(job.job_id, leased.lease_id, {}, None)
            if asked["gated"]:
                gated += 1
                await service.respond_approval(job.job_id, "approve", "", "all")
    assert abs(gated / 10_000 - 0.300) <= 0.015


async def test_failures_follow_the_recovery_mapping(tmp_path: Path) -> None:
    """Test 17: timeouts back off 1000, 2000, 4000 ms (not dispatchable before not_before);
    the fourth fails for good; resource_exhaustion excludes the agent; a crash mapped to
    human_escalation fails with needs_human."""
    async with stdio_scheduler(tmp_path, "--test-mode") as client:
        job_id, lease = await _running(client)
        backoffs = []
        early = []
        for attempt in range(4):
            failed = await ok(
                client,
                "step_fail",
                job_id=job_id,
                lease_id=lease,
                step_id="s",
                kind="timeout",
                message="slow upstream",
            )
            backoffs.append(failed["backoff_ms"])
            if failed["job_state"] == "failed":
                break
            early.append((await ok(client, "dispatch_next", agent_id="a"))["job"])
            await ok(client, "test_advance_clock", seconds=failed["backoff_ms"] / 1000)
            leased = await ok(client, "dispatch_next", agent_id="a")
            assert leased["job"]["job_id"] == job_id, attempt
            lease = leased["lease_id"]
        final = await ok(client, "get_job", job_id=job_id)
        await ok(client, "register_agent", agent_id="b", profile={"name": "worker"})
        other, other_lease = await _running(client)
        fallback = await ok(
            client,
            "step_fail",
            job_id=other,
            lease_id=other_lease,
            step_id="s",
            kind="resource_exhaustion",
            message="out of memory",
        )
        not_for_a = await ok(client, "dispatch_next", agent_id="a")
        for_b = await ok(client, "dispatch_next", agent_id="b")
        legal, legal_lease = await _running(client, recovery={"crash": "human_escalation"})
        escalated = await ok(
            client,
            "step_fail",
            job_id=legal,
            lease_id=legal_lease,
            step_id="s",
            kind="crash",
            message="boom",
        )
        escalated_job = await ok(client, "get_job", job_id=legal)
    assert backoffs == [1000, 2000, 4000, None]
    assert early == [None, None, None]
    assert (final["state"], final["retry_count"]) == ("failed", 3)
    assert (fallback["action"], fallback["job_state"]) == ("fallback_agent", "pending")
    assert not_for_a["job"] is None
    assert for_b["job"]["job_id"] == other
    assert escalated["action"] == "human_escalation"
    assert escalated_job["state"] == "failed"
    assert escalated_job["error"]["needs_human"] is True


async def test_a_completed_step_is_memoized_and_never_overwritten(tmp_path: Path) -> None:
    """Test 18: begin s1 (not cached), complete {"x":42}, begin again -> cached with
    {"x":42}; metrics 1 completed, 1 cached; a second completion keeps the first result."""
    async with stdio_scheduler(tmp_path) as client:
        job_id, lease = await _running(client)
        first = await ok(client, "step_begin", job_id=job_id, lease_id=lease, step_id="s1")
        await ok(
            client,
            "step_complete",
            job_id=job_id,
            lease_id=lease,
            step_id="s1",
            result={"x": 42},
            elapsed_ms=5,
        )
        again = await ok(client, "step_begin", job_id=job_id, lease_id=lease, step_id="s1")
        job = await ok(client, "get_job", job_id=job_id)
        second = await ok(
            client,
            "step_complete",
            job_id=job_id,
            lease_id=lease,
            step_id="s1",
            result={"x": 7},
            elapsed_ms=5,
        )
    assert first["cached"] is False
    assert (again["cached"], again["result"]) == (True, {"x": 42})
    assert (job["metrics"]["steps_completed"], job["metrics"]["steps_cached"]) == (1, 1)
    assert second == {"stored": False, "result": {"x": 42}}
