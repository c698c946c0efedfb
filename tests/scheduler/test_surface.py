"""The MCP surface beyond the numbered acceptance tests: the queue bound, bad input on every
tool (typed error, nothing written), job timeouts and the siblings' shutdown grace. These run
on the in-memory client (same server object, no transport)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import LoggingMessageNotificationParams, ResourceUpdatedNotification

from aios_scheduler.config import SchedulerLimits, SchedulerSettings
from aios_scheduler.server import build_server
from tests.scheduler.support import memory_scheduler, ok, read_json, reason, refused

pytestmark = pytest.mark.anyio


async def test_submitting_past_the_queue_limit_is_refused(tmp_path: Path) -> None:
    """The queue is bounded (queue_depth_max); the overflow is resource_exhausted, naming
    the limit, and nothing is stored."""
    limits = SchedulerLimits(queue_depth_max=2)
    async with memory_scheduler(tmp_path, limits=limits) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=10)
        for _ in range(2):
            await ok(client, "submit_job", client_id="c", task="t")
        error = await refused(client, "submit_job", client_id="c", task="t")
        dag = await refused(client, "submit_dag", client_id="c", tasks=[{"key": "k", "task": "t"}])
        stats = await ok(client, "get_stats")
        owner = await read_json(client, "scheduler://clients/c")
    assert (error["code"], reason(error)) == ("resource_exhausted", "queue_full")
    assert "queue_depth_max=2" in error["message"]
    assert reason(dag) == "queue_full"
    assert stats["queue_size"] == 2
    assert owner["reserved"] == 2


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("update_client", {"client_id": "ghost", "credits": 1}, "client_not_registered"),
    ("update_client", {"client_id": "c", "credits": -5}, "invalid_argument"),
    ("update_client", {"client_id": "c", "tier": "gold"}, "invalid_argument"),
    ("create_group", {"group_id": "g", "strategy": "all_for_none"}, "invalid_argument"),
    ("create_group", {"group_id": "g", "strategy": "one_for_one", "parent_id": "x"}, "not_found"),
    ("create_group", {"group_id": "pool", "strategy": "one_for_one"}, "already_exists"),
    ("reset_group", {"group_id": "ghost"}, "not_found"),
    ("register_agent", {"agent_id": "b", "profile": {}}, "invalid_argument"),
    ("register_agent", {"agent_id": "b", "profile": {"name": "w"}, "cost": 0}, "invalid_argument"),
    ("register_agent", {"agent_id": "b", "profile": {"name": "w"}, "group_id": "x"}, "not_found"),
    ("register_agent", {"agent_id": "a", "profile": {"name": "w"}}, "already_exists"),
    ("stop_agent", {"agent_id": "ghost"}, "not_found"),
    ("submit_job", {"client_id": "c", "task": "t", "agent_id": "ghost"}, "not_found"),
    ("submit_job", {"client_id": "c", "task": "t", "retries_max": -1}, "invalid_argument"),
    (
        "submit_job",
        {"client_id": "c", "task": "t", "recovery": {"crash": "pray"}},
        "invalid_argument",
    ),
    ("submit_dag", {"client_id": "c", "tasks": []}, "invalid_argument"),
    (
        "submit_dag",
        {"client_id": "c", "tasks": [{"key": "a", "task": "t", "depends_on": ["z"]}]},
        "invalid_argument",
    ),
    ("dispatch_next", {"agent_id": "ghost"}, "not_found"),
    ("dispatch_next", {"agent_id": "a", "wait_s": 31}, "invalid_argument"),
    ("heartbeat", {"job_id": "job_x", "lease_id": "l"}, "not_found"),
    ("step_begin", {"job_id": "job_x", "lease_id": "l", "step_id": ""}, "invalid_argument"),
    (
        "step_complete",
        {"job_id": "job_x", "lease_id": "l", "step_id": "s", "result": 1, "elapsed_ms": -1},
        "invalid_argument",
    ),
    (
        "step_fail",
        {"job_id": "job_x", "lease_id": "l", "step_id": "s", "kind": "gremlins", "message": "m"},
        "invalid_argument",
    ),
    ("checkpoint_job", {"job_id": "job_x", "lease_id": "l"}, "not_found"),
    ("resume_job", {"job_id": "job_x", "lease_id": "l"}, "not_found"),
    (
        "request_approval",
        {"job_id": "job_x", "lease_id": "l", "artifact": 1, "confidence": 2},
        "invalid_argument",
    ),
    ("respond_approval", {"job_id": "job_x", "decision": "maybe"}, "invalid_argument"),
    ("respond_approval", {"job_id": "job_x", "decision": "approve"}, "not_found"),
    ("complete_job", {"job_id": "job_x", "lease_id": "l", "result": 1}, "not_found"),
    ("cancel_job", {"job_id": "job_x"}, "not_found"),
    ("retry_job", {"job_id": "job_x"}, "not_found"),
    ("report_exit", {"agent_id": "ghost"}, "not_found"),
    ("get_job", {"job_id": "job_x"}, "not_found"),
    ("list_jobs", {"limit": 0}, "invalid_argument"),
    ("list_jobs", {"cursor": "abc"}, "invalid_argument"),
    (
        "wait_job",
        {"job_id": "job_x", "states": ["completed"], "timeout_s": 301},
        "invalid_argument",
    ),
    ("evaluate", {"agent_id": "ghost", "scores": {}}, "not_found"),
    ("evaluate", {"agent_id": "a", "scores": {}, "preset": "astrology"}, "invalid_argument"),
    ("get_reputation", {"agent_id": "ghost"}, "not_found"),
    ("rank_agents", {"limit": 0}, "invalid_argument"),
    ("set_weights", {"weights": {"quality": 1.0}}, "invalid_weights"),
    ("create_pipeline", {"name": "p", "stages": []}, "invalid_argument"),
    ("create_pipeline", {"name": "Bad Name", "stages": [{"name": "s"}]}, "invalid_argument"),
    (
        "publish_event",
        {"pipeline_id": "pipe_x", "stage": "s", "event_type": "t"},
        "pipeline_not_found",
    ),
    ("read_events", {"pipeline_id": "pipe_x", "stage": "s"}, "pipeline_not_found"),
    ("ack_events", {"pipeline_id": "pipe_x", "stage": "s", "up_to_seq": 0}, "pipeline_not_found"),
    ("complete_pipeline", {"pipeline_id": "pipe_x", "status": "completed"}, "pipeline_not_found"),
]


async def _arranged(client: Client) -> None:
    await ok(client, "register_client", client_id="c", tier="marketplace", credits=10)
    await ok(client, "register_agent", agent_id="a", profile={"name": "w"})


async def test_bad_input_on_every_tool_is_typed_and_writes_nothing(tmp_path: Path) -> None:
    """Each tool refuses bad input with a typed error naming the reason, and the durable
    state digest does not change."""
    outcomes = []
    async with memory_scheduler(tmp_path) as client:
        await _arranged(client)
        for tool, arguments, _ in BAD_CALLS:
            before = await read_json(client, "scheduler://state/digest")
            error = await refused(client, tool, **arguments)
            after = await read_json(client, "scheduler://state/digest")
            outcomes.append((tool, reason(error), after == before))
        listed = {tool.name for tool in (await client.list_tools()).tools}
    assert outcomes == [(tool, expected, True) for tool, _, expected in BAD_CALLS]
    assert listed - {tool for tool, _, _ in BAD_CALLS} == {"register_client", "get_stats"}


async def test_a_job_past_its_timeout_is_retried_with_backoff(tmp_path: Path) -> None:
    """A job's timeout_s counts time in running and checkpointed; past it the job fails with
    kind timeout and is requeued with backoff (retry_with_backoff)."""
    async with memory_scheduler(tmp_path, test_mode=True) as client:
        await _arranged(client)
        job = await ok(client, "submit_job", client_id="c", task="t", timeout_s=10)
        leased = await ok(client, "dispatch_next", agent_id="a")
        await ok(client, "test_advance_clock", seconds=5)
        await ok(client, "heartbeat", job_id=job["job_id"], lease_id=leased["lease_id"])
        await ok(client, "test_advance_clock", seconds=5)
        still = await ok(client, "get_job", job_id=job["job_id"])
        await ok(client, "heartbeat", job_id=job["job_id"], lease_id=leased["lease_id"])
        await ok(client, "test_advance_clock", seconds=1)
        timed_out = await ok(client, "get_job", job_id=job["job_id"])
    assert still["state"] == "running"
    assert (timed_out["state"], timed_out["retry_count"]) == ("pending", 1)
    assert timed_out["error"]["kind"] == "timeout"
    assert timed_out["not_before"] > 0


async def test_siblings_get_their_shutdown_grace_before_requeue(tmp_path: Path) -> None:
    """one_for_all with shutdown_s 5: a crash requeues the crashed agent's job at once; the
    sibling's heartbeat says shutdown_requested and its job is requeued after 5 s."""
    async with memory_scheduler(tmp_path, test_mode=True) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=10)
        await ok(client, "create_group", group_id="team", strategy="one_for_all")
        leases = {}
        for agent in ("a1", "a2"):
            await ok(
                client,
                "register_agent",
                agent_id=agent,
                profile={"name": "w"},
                group_id="team",
                shutdown_s=5,
            )
            job = await ok(client, "submit_job", client_id="c", task=agent, agent_id=agent)
            leased = await ok(client, "dispatch_next", agent_id=agent)
            leases[agent] = (job["job_id"], leased["lease_id"])
        await ok(client, "report_exit", agent_id="a1", exit_code=1)
        crashed = await ok(client, "get_job", job_id=leases["a1"][0])
        beat = await ok(client, "heartbeat", job_id=leases["a2"][0], lease_id=leases["a2"][1])
        await ok(client, "checkpoint_job", job_id=leases["a2"][0], lease_id=leases["a2"][1])
        await ok(client, "test_advance_clock", seconds=5)
        sibling = await ok(client, "get_job", job_id=leases["a2"][0])
    assert crashed["state"] == "pending"
    assert beat["shutdown_requested"] is True
    assert sibling["state"] == "pending"
    assert sibling["checkpoint"] is not None


async def test_a_supervised_pipeline_restarts_later_stages_with_a_crashed_one(
    tmp_path: Path,
) -> None:
    """create_pipeline(supervise=true) puts the stage agents in a rest_for_one group in stage
    order: a crash of the middle stage requeues its job and the last stage's, not the first."""
    stages = [
        {"name": "first", "publishes": ["a"], "agent_id": "s1"},
        {"name": "middle", "subscribes": ["a"], "publishes": ["b"], "agent_id": "s2"},
        {"name": "last", "subscribes": ["b"], "publishes": [], "agent_id": "s3"},
    ]
    async with memory_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=10)
        for agent in ("s1", "s2", "s3"):
            await ok(client, "register_agent", agent_id=agent, profile={"name": "w"}, shutdown_s=0)
        created = await ok(client, "create_pipeline", name="staged", stages=stages, supervise=True)
        jobs = {}
        for agent in ("s1", "s2", "s3"):
            job = await ok(client, "submit_job", client_id="c", task=agent, agent_id=agent)
            await ok(client, "dispatch_next", agent_id=agent)
            jobs[agent] = job["job_id"]
        report = await ok(client, "report_exit", agent_id="s2", exit_code=1)
        states = {a: (await ok(client, "get_job", job_id=j))["state"] for a, j in jobs.items()}
        group = await read_json(client, f"scheduler://groups/{created['pipeline_id']}")
    assert group["strategy"] == "rest_for_one"
    assert report["restarted"] == ["s2", "s3"]
    assert states == {"s1": "running", "s2": "pending", "s3": "pending"}


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_telemetry_reaches_the_caller_as_log_messages(tmp_path: Path) -> None:
    """Each call's telemetry (section 5) arrives as notifications/message on logger
    scheduler.telemetry: job_assigned and scheduler_dispatch on dispatch, step_replayed on a
    memo hit, job_completed on completion."""
    received: list[tuple[str, str]] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        assert params.logger == "scheduler.telemetry", params
        assert isinstance(params.data, dict), params
        received.append((params.level, params.data["event"]))

    settings = SchedulerSettings(home=tmp_path)
    async with Client(build_server(settings), mode="legacy", logging_callback=on_log) as client:
        await _arranged(client)
        job = await ok(client, "submit_job", client_id="c", task="t")
        leased = await ok(client, "dispatch_next", agent_id="a")
        lease = {"job_id": job["job_id"], "lease_id": leased["lease_id"]}
        await ok(client, "step_begin", **lease, step_id="s")
        await ok(client, "step_complete", **lease, step_id="s", result=1, elapsed_ms=1)
        await ok(client, "step_begin", **lease, step_id="s")
        await ok(client, "complete_job", **lease, result=1)
    assert received == [
        ("info", "agent_started"),
        ("info", "job_assigned"),
        ("info", "scheduler_dispatch"),
        ("info", "step_completed"),
        ("info", "step_replayed"),
        ("info", "job_completed"),
    ]


async def test_the_queue_resource_predicts_the_dispatch_order(tmp_path: Path) -> None:
    """scheduler://queue simulates the next dispatches for an unconstrained agent on a copy
    of the index; with no new arrivals the real dispatches follow it exactly."""
    async with memory_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="A", tier="contracted", credits=300)
        await ok(client, "register_client", client_id="B", tier="marketplace", credits=900)
        await ok(client, "register_agent", agent_id="a", profile={"name": "w"})
        for index in range(12):
            await ok(client, "submit_job", client_id="AB"[index % 2], task="t", cost=1 + index % 3)
        predicted = (await read_json(client, "scheduler://queue"))["jobs"]
        actual = []
        for _ in range(12):
            leased = await ok(client, "dispatch_next", agent_id="a")
            actual.append(leased["job"]["job_id"])
            await ok(
                client,
                "complete_job",
                job_id=leased["job"]["job_id"],
                lease_id=leased["lease_id"],
                result=None,
            )
    assert [entry["job_id"] for entry in predicted] == actual


async def test_the_events_resource_lists_a_pipelines_log(tmp_path: Path) -> None:
    """scheduler://pipelines/{id}/events holds every event in sequence order."""
    stages = [{"name": "src", "publishes": ["a", "b"]}]
    async with memory_scheduler(tmp_path) as client:
        pipeline = (await ok(client, "create_pipeline", name="p", stages=stages))["pipeline_id"]
        for kind in ("a", "b", "a"):
            await ok(client, "publish_event", pipeline_id=pipeline, stage="src", event_type=kind)
        events = await read_json(client, f"scheduler://pipelines/{pipeline}/events")
    assert [(e["sequence"], e["type"]) for e in events["events"]] == [(0, "a"), (1, "b"), (2, "a")]


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_subscribers_hear_when_a_job_changes(tmp_path: Path) -> None:
    """resources/subscribe on a job's URI: each committed transition of that job sends
    notifications/resources/updated for it; other URIs stay quiet."""
    updated: list[str] = []
    heard = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            heard.set()

    settings = SchedulerSettings(home=tmp_path)
    async with Client(build_server(settings), mode="legacy", message_handler=on_message) as client:
        await _arranged(client)
        job = await ok(client, "submit_job", client_id="c", task="t")
        uri = f"scheduler://jobs/{job['job_id']}"
        await client.subscribe_resource(uri)
        await ok(client, "dispatch_next", agent_id="a")
        with anyio.fail_after(5):
            await heard.wait()
    assert updated == [uri]
