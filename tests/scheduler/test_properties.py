"""Property tests (Hypothesis, bounded): dispatch order against a small reference model of the
credit-weighted rule, and the job lifecycle against the legal-edge table."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios_scheduler.config import SchedulerSettings
from aios_scheduler.fairness import increment
from aios_scheduler.lifecycle import EDGES, replay
from aios_scheduler.models import AgentProfile, Tier
from aios_scheduler.service import SchedulerService
from aios_shared.errors import AiosError

EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class ModelClient:
    tier: Tier
    balance: float
    avruntime: float = 0.0


def reference_order(
    clients: dict[str, ModelClient], submissions: list[tuple[str, float]]
) -> list[int]:
    """The spec's rule, naively: placement at submit, then repeatedly the oldest job of the
    client with the smallest (avruntime, oldest seq); debit at dispatch."""
    queues: dict[str, list[tuple[int, float]]] = {name: [] for name in clients}
    for seq, (name, cost) in enumerate(submissions, start=1):
        if not queues[name]:
            others = [clients[o].avruntime for o, q in queues.items() if q and o != name]
            if others:
                clients[name].avruntime = max(clients[name].avruntime, min(others))
        queues[name].append((seq, cost))
    order = []
    while any(queues.values()):
        name = min(
            (n for n, q in queues.items() if q),
            key=lambda n: (clients[n].avruntime, queues[n][0][0]),
        )
        seq, cost = queues[name].pop(0)
        client = clients[name]
        client.avruntime += increment(cost, client.balance, client.tier, 0.0, 0.0)
        client.balance -= cost
        order.append(seq)
    return order


async def _service_order(
    home: Path, clients: dict[str, ModelClient], submissions: list[tuple[str, float]]
) -> list[int]:
    async with SchedulerService.open(SchedulerSettings(home=home, synchronous="NORMAL")) as svc:
        for name, client in clients.items():
            await svc.register_client(name, client.tier, client.balance)
        await svc.register_agent(
            "a", AgentProfile(name="w"), 1.0, "supervised", "pool", "transient", 0.0
        )
        for name, cost in submissions:
            await svc.submit_job({"client_id": name, "task": "t", "cost": cost})
        order = []
        for _ in submissions:
            leased = await svc.dispatch_next("a")
            assert leased.job is not None and leased.lease_id is not None
            order.append(leased.job.seq)
            await svc.complete_job(leased.job.job_id, leased.lease_id, None, None)
        return order


clients_strategy = st.dictionaries(
    st.sampled_from(["A", "B", "C", "D"]),
    st.tuples(st.sampled_from(["contracted", "marketplace"]), st.integers(100, 5000)),
    min_size=1,
    max_size=4,
)


@EXAMPLES
@given(data=st.data(), clients=clients_strategy)
def test_dispatch_order_matches_the_reference_model(
    data: st.DataObject, clients: dict[str, tuple[Tier, int]]
) -> None:
    """Whatever the clients, credits, costs and submission order, the scheduler dispatches in
    exactly the order of the naive reference model of spec section 2.4 (weighted policy)."""
    submissions = data.draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(clients)), st.sampled_from([0.5, 1.0, 2.0, 3.0])),
            min_size=1,
            max_size=30,
        )
    )
    expected = reference_order(
        {n: ModelClient(t, float(c)) for n, (t, c) in clients.items()}, submissions
    )
    with tempfile.TemporaryDirectory() as home:
        actual = anyio.run(
            _service_order,
            Path(home),
            {n: ModelClient(t, float(c)) for n, (t, c) in clients.items()},
            submissions,
        )
    assert actual == expected


OPERATIONS = [
    "dispatch",
    "checkpoint",
    "resume",
    "request_approval",
    "approve",
    "reject",
    "complete",
    "cancel",
    "step_fail",
    "retry",
    "crash",
]


async def _apply(svc: SchedulerService, job_id: str, lease: dict[str, str], op: str) -> None:
    lease_id = lease.get("id", "none")
    if op == "dispatch":
        leased = await svc.dispatch_next("a")
        if leased.lease_id is not None:
            lease["id"] = leased.lease_id
    elif op == "checkpoint":
        await svc.checkpoint_job(job_id, lease_id, None)
    elif op == "resume":
        await svc.resume_job(job_id, lease_id)
    elif op == "request_approval":
        await svc.request_approval(job_id, lease_id, {}, None)
    elif op in ("approve", "reject"):
        await svc.respond_approval(job_id, op, "no", "all")
    elif op == "complete":
        await svc.complete_job(job_id, lease_id, None, None)
    elif op == "cancel":
        await svc.cancel_job(job_id, None)
    elif op == "step_fail":
        await svc.step_fail(job_id, lease_id, "s", "invalid_output", "bad")
    elif op == "retry":
        await svc.retry_job(job_id, [])
    else:
        await svc.report_exit("a", 1, "crash")


async def _lifecycle(home: Path, operations: list[str]) -> list[tuple[Any, Any]]:
    async with SchedulerService.open(SchedulerSettings(home=home, synchronous="NORMAL")) as svc:
        await svc.register_client("c", "marketplace", 100.0)
        await svc.register_agent(
            "a", AgentProfile(name="w"), 1.0, "supervised", "pool", "transient", 0.0
        )
        job = await svc.submit_job({"client_id": "c", "task": "t", "retries_max": 2})
        lease: dict[str, str] = {}
        for op in operations:
            before = (await svc.job(job.job_id)).state
            try:
                await _apply(svc, job.job_id, lease, op)
            except AiosError as error:
                assert error.details.get("reason") in (
                    "invalid_state",
                    "lease_invalid",
                    "retries_exhausted",
                    "agent_busy",
                ), error.details
                assert (await svc.job(job.job_id)).state == before, op
            after = await svc.job(job.job_id)
            agent = svc.agents["a"]
            assert (agent.status == "busy") == (
                after.state in ("running", "checkpointed", "waiting_approval")
            ), (op, after.state, agent.status)
        rows = await svc.store.transitions(job.job_id)
        final = (await svc.job(job.job_id)).state
        assert replay([(row["from"], row["to"]) for row in rows]) == final
        return [(row["from"], row["to"]) for row in rows]


@EXAMPLES
@given(operations=st.lists(st.sampled_from(OPERATIONS), max_size=25))
def test_any_sequence_of_calls_only_takes_legal_edges(operations: list[str]) -> None:
    """Any sequence of lifecycle calls either moves the job along a legal edge of the table
    in section 2.2 or is refused with the state unchanged; the agent is busy exactly while
    the job is bound; the transition log replays to the job's state."""
    with tempfile.TemporaryDirectory() as home:
        edges = anyio.run(_lifecycle, Path(home), operations)
    assert all(edge in EDGES for edge in edges)
