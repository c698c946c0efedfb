"""The scheduler's domain logic (spec/scheduler.md sections 2-3), transport-free.

Every mutating call runs under one service lock as one database transaction (``Work``); records
it changes are staged copies, installed into the in-memory state and the ready index only after
COMMIT. The in-memory state (clients, agents, groups, live jobs, the ready index) is derived: it
is rebuilt from the database at start-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import anyio

from aios_scheduler import evaluation, lifecycle
from aios_scheduler.config import SchedulerSettings
from aios_scheduler.errors import (
    agent_busy,
    already_exists,
    bad_argument,
    client_not_registered,
    insufficient_credits,
    invalid_state,
    lease_invalid,
    not_found,
    queue_full,
    reasoned,
)
from aios_scheduler.fairness import QueueItem, ReadyIndex, increment
from aios_scheduler.locking import serialized
from aios_scheduler.models import (
    Agent,
    AgentProfile,
    Client,
    FailureKind,
    Group,
    Job,
    JobError,
    JobState,
    Lease,
    Oversight,
    RecoveryAction,
    RestartType,
    Strategy,
    Tier,
)
from aios_scheduler.store import MIGRATIONS, Store
from aios_scheduler.supervision import restart_set, window
from aios_scheduler.work import Clock, FrozenClock, Telemetry, WallClock, Work
from aios_shared.db import Database
from aios_shared.errors import Conflict, InvalidArgument

__all__ = ["TELEMETRY_SINK", "DispatchResult", "SchedulerService"]

logger = logging.getLogger(__name__)

ROOT: Final = "root"
POOL: Final = "pool"
SPOT_CHECK_P: Final = 0.3
DEFAULT_RECOVERY: Final[dict[FailureKind, RecoveryAction]] = {
    "crash": "restart",
    "timeout": "retry_with_backoff",
    "resource_exhaustion": "fallback_agent",
    "invalid_output": "retry_with_backoff",
}
BOUND: Final[frozenset[JobState]] = frozenset({"running", "checkpointed", "waiting_approval"})
RUNTIME: Final[frozenset[JobState]] = frozenset({"running", "checkpointed"})


# The telemetry of the calling task's commits, collected for its MCP reply (section 5).
TELEMETRY_SINK: ContextVar[list[Telemetry] | None] = ContextVar(
    "scheduler_telemetry_sink", default=None
)


@dataclass(frozen=True)
class DispatchResult:
    job: Job | None
    lease_id: str | None
    lease_expires_at: int | None
    checkpoint: dict[str, Any] | None
    feedback: list[str]
    avruntime_after: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": None if self.job is None else self.job.model_dump(mode="json"),
            "lease_id": self.lease_id,
            "lease_expires_at": self.lease_expires_at,
            "checkpoint": self.checkpoint,
            "feedback": self.feedback,
            "avruntime_after": self.avruntime_after,
        }


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


class SchedulerService:
    """Clients, agents, groups, jobs, durable steps, supervision and evaluation."""

    def __init__(self, store: Store, settings: SchedulerSettings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.limits = settings.limits
        self.clock = clock
        self.clients: dict[str, Client] = {}
        self.agents: dict[str, Agent] = {}
        self.groups: dict[str, Group] = {}
        self.jobs: dict[str, Job] = {}
        self.reputations: dict[str, tuple[float, int]] = {}
        self.index = ReadyIndex(settings.tier_policy)
        self.dependants: dict[str, set[str]] = {}
        self.seq = 0
        self.halted = False
        self.seed = ""
        self.weights: dict[str, float] = dict(evaluation.DEFAULT_WEIGHTS)
        self._lock = anyio.Lock()
        self._changed = anyio.Event()
        self.listeners: list[Callable[[Work], None]] = []

    # ---- start-up ------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: SchedulerSettings) -> AsyncIterator[SchedulerService]:
        path = settings.resolved_database_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        async with Database.open(
            path, migrations=MIGRATIONS, synchronous=settings.synchronous
        ) as db:
            store = Store(db)
            clock: Clock = WallClock()
            if settings.test_mode:
                stored = await store.meta("test_clock_ms")
                clock = FrozenClock(int(stored) if stored else WallClock().now_ms())
            service = cls(store, settings, clock)
            await service._load()
            yield service

    async def _load(self) -> None:
        async with self._lock:
            await self._load_locked()

    async def _load_locked(self) -> None:
        self.seed = await self.store.meta("seed") or ""
        async with self._work() as work:
            if not self.seed:
                self.seed = secrets.token_hex(16)
                await self.store.set_meta(work.tx, "seed", self.seed)
            if isinstance(self.clock, FrozenClock):
                await self.store.set_meta(work.tx, "test_clock_ms", str(self.clock.value_ms))
        self.halted = (await self.store.meta("halted")) == "1"
        weights = await self.store.meta("weights")
        if weights:
            self.weights = json.loads(weights)
        self.clients = {c.client_id: c for c in await self.store.load_clients()}
        self.groups = {g.group_id: g for g in await self.store.load_groups()}
        self.agents = {a.agent_id: a for a in await self.store.load_agents()}
        self.reputations = await self.store.reputations()
        self.seq = await self.store.max_seq()
        for job in await self.store.load_live_jobs():
            self.jobs[job.job_id] = job
        for job in self.jobs.values():
            if job.state == "pending":
                self._index_add(job)
        if ROOT not in self.groups:
            async with self._work() as work:
                root = Group(
                    group_id=ROOT,
                    strategy="rest_for_one",
                    restarts_max=self.limits.root_restarts_max,
                    period_s=self.limits.root_period_s,
                    parent_id=None,
                )
                pool = Group(group_id=POOL, strategy="one_for_one")
                work.groups[ROOT] = root
                work.groups[POOL] = pool

    # ---- the unit of work ----------------------------------------------------------------

    @asynccontextmanager
    async def _work(self) -> AsyncIterator[Work]:
        """One transaction; the caller holds the service lock (``@serialized``)."""
        assert self._lock.locked(), "a unit of work outside the service lock"
        async with self.store.db.transaction() as tx:
            work = Work(
                tx=tx,
                now=self.clock.now_ms(),
                live_clients=self.clients,
                live_agents=self.agents,
                live_groups=self.groups,
                live_jobs=self.jobs,
            )
            yield work
            await self._flush(work)
        self._install(work)

    async def _flush(self, work: Work) -> None:
        for client in work.clients.values():
            await self.store.save_client(work.tx, client)
        for group in work.groups.values():
            await self.store.save_group(work.tx, group)
        for agent in work.agents.values():
            await self.store.save_agent(work.tx, agent)
        for job in work.jobs.values():
            job.updated_at = work.now
            await self.store.save_job(work.tx, job)

    def _install(self, work: Work) -> None:
        """After COMMIT: make the staged records live and bring the ready index up to date."""
        self.clients.update(work.clients)
        self.groups.update(work.groups)
        self.agents.update(work.agents)
        self.reputations.update(work.reputations)
        for job in work.jobs.values():
            self._index_remove(job.job_id)
            if job.state in lifecycle.TERMINAL:
                self.jobs.pop(job.job_id, None)
            else:
                self.jobs[job.job_id] = job
        for job in work.jobs.values():
            if job.state == "pending":
                self._index_add(job)
            if job.state == "completed":
                for dependant in self.dependants.pop(job.job_id, set()):
                    item = self.index.items.get(dependant)
                    if item is not None:
                        item.waiting_on.discard(job.job_id)
        for client in work.clients.values():
            self.index.rekey(client.client_id, client.tier, client.avruntime)
        for entry in work.telemetry:
            logger.log(
                logging.WARNING if entry.level == "warning" else logging.INFO,
                entry.event,
                extra={"telemetry": entry.data},
            )
        sink = TELEMETRY_SINK.get()
        if sink is not None:
            sink.extend(work.telemetry)
        for listener in self.listeners:
            listener(work)
        self._changed.set()
        self._changed = anyio.Event()

    def _index_add(self, job: Job) -> None:
        waiting = {
            dep
            for dep in job.depends_on
            if dep in self.jobs and self.jobs[dep].state != "completed"
        }
        for dep in waiting:
            self.dependants.setdefault(dep, set()).add(job.job_id)
        client = self.clients[job.client_id]
        self.index.add(
            QueueItem(
                job_id=job.job_id,
                client_id=job.client_id,
                seq=job.seq,
                cost=job.cost,
                required_capabilities=frozenset(job.required_capabilities),
                task_domain=job.task_domain,
                pinned_agent_id=job.agent_id,
                excluded_agents=frozenset(job.excluded_agents),
                waiting_on=waiting,
                not_before=job.not_before,
            ),
            client.tier,
            client.avruntime,
        )

    def _index_remove(self, job_id: str) -> None:
        item = self.index.items.get(job_id)
        if item is not None:
            client = self.clients[item.client_id]
            self.index.remove(job_id, client.tier, client.avruntime)

    async def _transition(
        self, work: Work, job: Job, target: JobState, trigger: str, reason: str | None = None
    ) -> None:
        assert lifecycle.is_legal(job.state, target), (job.state, target)
        if job.state in RUNTIME and target not in RUNTIME and job.run_started_at is not None:
            job.run_elapsed_ms += max(0, work.now - job.run_started_at)
            job.run_started_at = None
        if job.state not in RUNTIME and target in RUNTIME:
            job.run_started_at = work.now
        await self.store.add_transition(
            work.tx, job.job_id, job.state, target, trigger, reason, work.now
        )
        job.state = target
        work.uris.add(f"scheduler://jobs/{job.job_id}")

    # ---- lookups -------------------------------------------------------------------------

    async def job(self, job_id: str) -> Job:
        live = self.jobs.get(job_id)
        if live is not None:
            return live
        stored = await self.store.get_job(job_id)
        if stored is None:
            raise not_found("job", job_id)
        return stored

    def agent(self, agent_id: str) -> Agent:
        found = self.agents.get(agent_id)
        if found is None:
            raise not_found("agent", agent_id)
        return found

    def client(self, client_id: str) -> Client:
        found = self.clients.get(client_id)
        if found is None:
            raise client_not_registered(client_id)
        return found

    def group(self, group_id: str) -> Group:
        found = self.groups.get(group_id)
        if found is None:
            raise not_found("group", group_id)
        return found

    async def replayed(self, request_id: str | None, tool: str) -> Any:
        """The stored reply of an already-committed request, or None."""
        if request_id is None:
            return None
        stored = await self.store.request(request_id)
        if stored is None:
            return None
        if stored[0] != tool:
            raise bad_argument(f"request_id {request_id!r} was used for {stored[0]}.")
        return stored[1]

    # ---- clients -------------------------------------------------------------------------

    @serialized
    async def register_client(self, client_id: str, tier: Tier, credits: float) -> Client:
        _check_credits(credits)
        if client_id in self.clients:
            raise already_exists("client", client_id)
        async with self._work() as work:
            client = Client(client_id=client_id, tier=tier, balance=credits, created_at=work.now)
            work.clients[client_id] = client
            await self.store.add_ledger(work.tx, client_id, credits, "set", None, work.now)
        return client

    @serialized
    async def update_client(
        self,
        client_id: str,
        credits: float | None,
        credit_delta: float | None,
        tier: Tier | None,
    ) -> Client:
        self.client(client_id)
        if credits is not None and credit_delta is not None:
            raise bad_argument("Give credits (absolute) or credit_delta, not both.")
        if credits is not None:
            _check_credits(credits)
        if credit_delta is not None and not math.isfinite(credit_delta):
            raise bad_argument("credit_delta must be a finite number.")
        async with self._work() as work:
            client = work.client(client_id)
            if credits is not None or credit_delta is not None:
                target = credits if credits is not None else client.balance + (credit_delta or 0.0)
                if target < 0:
                    raise bad_argument(f"The balance would be {target:g}; it must stay >= 0.")
                if target < client.reserved:
                    raise insufficient_credits(target, client.reserved)
                kind = "set" if credits is not None else "credit"
                await self.store.add_ledger(
                    work.tx, client_id, target - client.balance, kind, None, work.now
                )
                client.balance = target
            if tier is not None:
                client.tier = tier
            work.uris.add(f"scheduler://clients/{client_id}")
        return client

    # ---- groups and agents ---------------------------------------------------------------

    @serialized
    async def create_group(
        self, group_id: str, strategy: Strategy, restarts_max: int, period_s: float, parent_id: str
    ) -> Group:
        if group_id in self.groups:
            raise already_exists("group", group_id)
        self.group(parent_id)
        async with self._work() as work:
            group = Group(
                group_id=group_id,
                strategy=strategy,
                restarts_max=restarts_max,
                period_s=period_s,
                parent_id=parent_id,
            )
            work.groups[group_id] = group
        return group

    @serialized
    async def reset_group(self, group_id: str) -> Group:
        self.group(group_id)
        async with self._work() as work:
            group = work.group(group_id)
            group.status = "active"
            group.restart_log = []
            if group_id == ROOT:
                self.halted = False
                await self.store.set_meta(work.tx, "halted", "0")
                for other in self.groups.values():
                    if other.status == "terminated":
                        restarted = work.group(other.group_id)
                        restarted.status = "active"
                        restarted.restart_log = []
            work.uris.add(f"scheduler://groups/{group_id}")
        return group

    @serialized
    async def register_agent(
        self,
        agent_id: str,
        profile: AgentProfile,
        cost: float,
        oversight: Oversight,
        group_id: str,
        restart: RestartType,
        shutdown_s: float,
    ) -> Agent:
        if agent_id in self.agents:
            raise already_exists("agent", agent_id)
        group = self.group(group_id)
        if group.status == "terminated":
            raise reasoned(
                Conflict,
                "group_terminated",
                f"Group {group_id!r} is terminated.",
                group_id=group_id,
            )
        if not math.isfinite(cost) or cost <= 0:
            raise bad_argument(f"cost={cost} must be a finite number > 0.")
        order = 1 + max(
            (a.start_order for a in self.agents.values() if a.group_id == group_id), default=0
        )
        async with self._work() as work:
            agent = Agent(
                agent_id=agent_id,
                profile=profile,
                cost=cost,
                oversight=oversight,
                group_id=group_id,
                restart=restart,
                shutdown_s=shutdown_s,
                start_order=order,
                created_at=work.now,
            )
            work.agents[agent_id] = agent
            work.emit("agent_started", agent_id=agent_id, group_id=group_id)
        return agent

    @serialized
    async def stop_agent(self, agent_id: str) -> Agent:
        self.agent(agent_id)
        async with self._work() as work:
            agent = work.agent(agent_id)
            await self._release_bound_job(work, agent, "agent_stopped", requeue=True)
            agent.status = "stopped"
            work.emit("agent_terminated", agent_id=agent_id, reason="stopped")
        return agent

    # ---- submission ----------------------------------------------------------------------

    def _new_job_id(self) -> str:
        while True:
            job_id = "job_" + secrets.token_hex(8)
            if job_id not in self.jobs:
                return job_id

    def _place(self, work: Work, client: Client) -> None:
        """CFS min_vruntime placement for a client whose queue goes from empty to non-empty."""
        if self.index.queued(client.client_id) or any(
            j.client_id == client.client_id and j.state == "pending" for j in work.jobs.values()
        ):
            return
        same_tier = self.settings.tier_policy == "strict"
        others = [
            self.clients[other].avruntime
            for other in self.index.clients_with_queue()
            if other != client.client_id
            and (not same_tier or self.clients[other].tier == client.tier)
        ]
        if others:
            client.avruntime = max(client.avruntime, min(others))

    def _job_cost(self, given: float | None, pinned: str | None) -> float:
        if pinned is not None:
            return self.agent(pinned).cost
        if given is None:
            return 1.0
        if not math.isfinite(given) or given <= 0:
            raise bad_argument(f"cost={given} must be a finite number > 0.")
        return given

    @serialized
    async def submit_job(self, spec: dict[str, Any]) -> Job:
        """Admit one job: validation, reservation, placement, enqueue, in one transaction."""
        client = self.client(spec["client_id"])
        key = spec.get("idempotency_key")
        if key is not None:
            existing = await self.store.job_by_idempotency_key(client.client_id, key)
            if existing is not None:
                return existing
        jobs = await self._admit(client, [spec], {})
        return jobs[0]

    @serialized
    async def submit_dag(self, client_id: str, tasks: list[dict[str, Any]]) -> list[Job]:
        client = self.client(client_id)
        if not tasks:
            raise bad_argument("A DAG needs at least one task.")
        if len(tasks) > self.limits.dag_tasks_max:
            raise bad_argument(f"A DAG holds at most dag_tasks_max={self.limits.dag_tasks_max}.")
        keys = [task["key"] for task in tasks]
        if len(set(keys)) != len(keys):
            raise bad_argument("Task keys must be unique.")
        for task in tasks:
            unknown = set(task.get("depends_on", [])) - set(keys)
            if unknown:
                raise bad_argument(
                    f"Task {task['key']!r} depends on unknown keys {sorted(unknown)}."
                )
        cycle = _find_cycle({t["key"]: list(t.get("depends_on", [])) for t in tasks})
        if cycle:
            raise reasoned(
                InvalidArgument,
                "cycle_detected",
                f"The tasks form a cycle: {' -> '.join(cycle)}.",
                cycle=cycle,
            )
        ordered = _topological(tasks)
        specs = [
            {
                "client_id": client_id,
                "task": task["task"],
                "input": task.get("input"),
                "cost": task.get("cost"),
                "required_capabilities": task.get("required_capabilities") or [],
                "dag_key": task["key"],
                "dag_depends_on": task.get("depends_on", []),
            }
            for task in ordered
        ]
        by_key: dict[str, str] = {}
        return await self._admit(client, specs, by_key)

    async def _admit(
        self, client: Client, specs: list[dict[str, Any]], by_key: dict[str, str]
    ) -> list[Job]:
        prepared = [self._prepare(spec) for spec in specs]
        total = math.fsum(cost for cost, _ in prepared)
        if len(self.index) + len(specs) > self.limits.queue_depth_max:
            raise queue_full(self.limits.queue_depth_max)
        available = client.balance - client.reserved
        if available < total:
            raise insufficient_credits(available, total)
        levels: dict[str, int] = {}
        created: list[Job] = []
        async with self._work() as work:
            staged = work.client(client.client_id)
            self._place(work, staged)
            for spec, (cost, dependencies) in zip(specs, prepared, strict=True):
                depends = list(dependencies) + [by_key[k] for k in spec.get("dag_depends_on", [])]
                level = 0
                for dep in depends:
                    dep_level = levels.get(dep)
                    if dep_level is None:
                        dep_level = (await self.job(dep)).level
                    level = max(level, dep_level + 1)
                self.seq += 1
                job = Job(
                    job_id=self._new_job_id(),
                    client_id=client.client_id,
                    task=spec["task"],
                    input=spec.get("input"),
                    required_capabilities=sorted(set(spec.get("required_capabilities") or [])),
                    task_domain=spec.get("task_domain"),
                    agent_id=spec.get("agent_id"),
                    cost=cost,
                    oversight=spec.get("oversight") or "autonomous_escalation",
                    retries_max=spec.get("retries_max", 3),
                    timeout_s=spec.get("timeout_s", 1800.0),
                    depends_on=depends,
                    recovery=spec.get("recovery") or {},
                    seq=self.seq,
                    level=level,
                    idempotency_key=spec.get("idempotency_key"),
                    created_at=work.now,
                    updated_at=work.now,
                )
                levels[job.job_id] = level
                if "dag_key" in spec:
                    by_key[spec["dag_key"]] = job.job_id
                await self._transition_new(work, job)
                staged.reserved += cost
                created.append(job)
            work.uris.add(f"scheduler://clients/{client.client_id}")
        return created

    async def _transition_new(self, work: Work, job: Job) -> None:
        work.jobs[job.job_id] = job
        await self.store.add_transition(
            work.tx, job.job_id, None, "pending", "submit_job", None, work.now
        )

    def _prepare(self, spec: dict[str, Any]) -> tuple[float, list[str]]:
        """Validate one job spec against live state; returns (cost, dependencies)."""
        task = spec.get("task", "")
        if not isinstance(task, str) or not task.strip():
            raise bad_argument("task must be a non-empty string.")
        if _size(spec.get("input")) > self.limits.input_bytes_max:
            raise bad_argument(f"input exceeds input_bytes_max={self.limits.input_bytes_max}.")
        pinned = spec.get("agent_id")
        cost = self._job_cost(spec.get("cost"), pinned)
        dependencies = list(spec.get("depends_on") or [])
        for dep in dependencies:
            found = self.jobs.get(dep)
            if found is None:
                raise not_found("job", dep)
            if found.client_id != spec["client_id"]:
                raise bad_argument(f"Dependency {dep} belongs to another client.")
        return cost, dependencies

    # ---- dispatch ------------------------------------------------------------------------

    async def dispatch_next(
        self, agent_id: str, wait_s: float = 0.0, request_id: str | None = None
    ) -> DispatchResult:
        stored = await self.replayed(request_id, "dispatch_next")
        if stored is not None:
            return _dispatch_from_dict(stored)
        deadline = anyio.current_time() + min(wait_s, self.limits.dispatch_wait_s_max)
        while True:
            changed = self._changed
            result = await self._dispatch_once(agent_id, request_id)
            remaining = deadline - anyio.current_time()
            if result.job is not None or remaining <= 0:
                return result
            with anyio.move_on_after(min(remaining, self.limits.sweep_period_s)):
                await changed.wait()

    def _check_dispatchable(self, agent: Agent) -> None:
        if self.halted:
            raise reasoned(
                Conflict,
                "supervisor_halted",
                "The supervisor is halted: root exceeded its restart intensity. "
                "Call reset_group('root').",
            )
        if self.groups[agent.group_id].status == "terminated":
            raise reasoned(
                Conflict,
                "group_terminated",
                f"Group {agent.group_id!r} is terminated.",
                group_id=agent.group_id,
            )
        if agent.status == "busy":
            raise agent_busy(agent.agent_id, agent.current_job_id)
        if agent.status == "stopped":
            raise invalid_state("agent", "stopped", ["idle"])

    @serialized
    async def _dispatch_once(self, agent_id: str, request_id: str | None) -> DispatchResult:
        agent = self.agent(agent_id)
        self._check_dispatchable(agent)
        capabilities = frozenset(agent.profile.capabilities)
        domains = frozenset(agent.profile.task_domain)
        now = self.clock.now_ms()
        item = self.index.select(
            lambda queued: queued.eligible(agent_id, capabilities, domains, now)
        )
        if item is None:
            return DispatchResult(None, None, None, None, [], None)
        async with self._work() as work:
            staged_agent = work.agent(agent_id)
            job = work.job(self.jobs[item.job_id])
            client = work.client(job.client_id)
            credits_before = client.balance
            if not job.charged:
                assert client.reserved + 1e-9 >= job.cost, (client.reserved, job.cost)
                client.balance -= job.cost
                client.reserved = max(0.0, client.reserved - job.cost)
                job.charged = True
                await self.store.add_ledger(
                    work.tx, client.client_id, -job.cost, "debit", job.job_id, work.now
                )
            reputation = self.reputations.get(agent_id, (0.0, 0))[0]
            client.avruntime += increment(
                job.cost, credits_before, client.tier, self.settings.beta, reputation
            )
            lease = Lease(
                lease_id="lease_" + secrets.token_hex(8),
                job_id=job.job_id,
                agent_id=agent_id,
                expires_at=work.now + round(self.limits.lease_ttl_s * 1000),
                status="active",
            )
            await self.store.put_lease(work.tx, lease)
            await self._transition(work, job, "running", "dispatch_next")
            job.lease_id = lease.lease_id
            job.lease_expires_at = lease.expires_at
            job.assigned_agent_id = agent_id
            job.dispatch_count += 1
            staged_agent.status = "busy"
            staged_agent.current_job_id = job.job_id
            result = DispatchResult(
                job,
                lease.lease_id,
                lease.expires_at,
                job.checkpoint,
                list(job.feedback),
                client.avruntime,
            )
            work.emit("job_assigned", job_id=job.job_id, agent_id=agent_id)
            work.emit(
                "scheduler_dispatch",
                job_id=job.job_id,
                client_id=client.client_id,
                avruntime=client.avruntime,
            )
            if request_id is not None:
                await self.store.record_request(
                    work.tx, request_id, "dispatch_next", result.as_dict()
                )
        return result

    # ---- leases --------------------------------------------------------------------------

    async def _leased(self, job_id: str, lease_id: str, expected: Sequence[JobState]) -> Job:
        """The live job bound to ``lease_id``; an expired lease is processed as a crash first.

        Raises:
            NotFound: no such job.
            Conflict: ``lease_invalid`` (``expired`` or ``revoked``: this job's lease ended;
                ``mismatch``: another job's or an unknown lease), or ``invalid_state`` when
                the job holds no lease at all and is not in ``expected``.
        """
        job = await self.job(job_id)
        if job.lease_id == lease_id and job.state in BOUND:
            assert job.lease_expires_at is not None, job
            if job.lease_expires_at > self.clock.now_ms():
                return job
            await self._sweep()
            raise lease_invalid("expired", lease_id)
        lease = await self.store.get_lease(lease_id)
        if lease is not None and lease.job_id == job_id and lease.status != "released":
            raise lease_invalid("expired" if lease.status == "expired" else "revoked", lease_id)
        if job.state not in BOUND:
            raise invalid_state("job", job.state, list(expected))
        raise lease_invalid("mismatch", lease_id)

    async def _end_lease(self, work: Work, job: Job, status: str) -> None:
        if job.lease_id is not None:
            assert job.assigned_agent_id is not None, job
            await self.store.put_lease(
                work.tx,
                Lease(
                    lease_id=job.lease_id,
                    job_id=job.job_id,
                    agent_id=job.assigned_agent_id,
                    expires_at=job.lease_expires_at or work.now,
                    status=status,  # type: ignore[arg-type]  # one of the Lease literals
                ),
            )
        job.lease_id = None
        job.lease_expires_at = None

    def _extend(self, work: Work, job: Job) -> None:
        job.lease_expires_at = work.now + round(self.limits.lease_ttl_s * 1000)

    def _free_agent(self, work: Work, job: Job) -> None:
        if job.assigned_agent_id is not None and job.assigned_agent_id in self.agents:
            agent = work.agent(job.assigned_agent_id)
            if agent.current_job_id == job.job_id:
                agent.current_job_id = None
                if agent.status == "busy":
                    agent.status = "idle"
                agent.shutdown_deadline = None

    @serialized
    async def heartbeat(self, job_id: str, lease_id: str) -> dict[str, Any]:
        job = await self._leased(job_id, lease_id, sorted(BOUND))
        async with self._work() as work:
            staged = work.job(job)
            self._extend(work, staged)
        agent = self.agents.get(staged.assigned_agent_id or "")
        return {
            "lease_expires_at": staged.lease_expires_at,
            "cancel_requested": False,
            "shutdown_requested": agent is not None and agent.shutdown_deadline is not None,
        }

    # ---- durable steps -------------------------------------------------------------------

    async def _resume_if_checkpointed(self, work: Work, job: Job, trigger: str) -> None:
        if job.state == "checkpointed":
            await self._transition(work, job, "running", trigger)

    def _require(self, job: Job, allowed: Sequence[JobState]) -> None:
        if job.state not in allowed:
            raise invalid_state("job", job.state, list(allowed))

    @serialized
    async def step_begin(self, job_id: str, lease_id: str, step_id: str) -> dict[str, Any]:
        _check_step_id(step_id)
        job = await self._leased(job_id, lease_id, ["running", "checkpointed"])
        self._require(job, ["running", "checkpointed"])
        existing = await self.store.get_step(job_id, step_id)
        async with self._work() as work:
            staged = work.job(job)
            self._extend(work, staged)
            await self._resume_if_checkpointed(work, staged, "step_begin")
            if existing is not None and existing[0] == "completed":
                staged.metrics = staged.metrics.model_copy(
                    update={"steps_cached": staged.metrics.steps_cached + 1}
                )
                work.emit("step_replayed", job_id=job_id, step_id=step_id)
                return {"cached": True, "result": existing[2], "attempt": existing[1]}
            await self.store.begin_step(work.tx, job_id, step_id)
        return {"cached": False, "result": None, "attempt": 1 + (existing[1] if existing else 0)}

    @serialized
    async def step_complete(
        self, job_id: str, lease_id: str, step_id: str, result: Any, elapsed_ms: int
    ) -> dict[str, Any]:
        _check_step_id(step_id)
        if elapsed_ms < 0:
            raise bad_argument("elapsed_ms must be >= 0.")
        encoded = json.dumps(result, separators=(",", ":"))
        if len(encoded.encode()) > self.limits.step_result_bytes_max:
            raise reasoned(
                InvalidArgument,
                "result_too_large",
                f"The step result exceeds step_result_bytes_max="
                f"{self.limits.step_result_bytes_max} bytes.",
            )
        job = await self._leased(job_id, lease_id, ["running", "checkpointed"])
        self._require(job, ["running", "checkpointed"])
        existing = await self.store.get_step(job_id, step_id)
        async with self._work() as work:
            staged = work.job(job)
            self._extend(work, staged)
            await self._resume_if_checkpointed(work, staged, "step_complete")
            if existing is not None and existing[0] == "completed":
                return {"stored": False, "result": existing[2]}
            await self.store.complete_step(work.tx, job_id, step_id, encoded, elapsed_ms, work.now)
            staged.metrics = staged.metrics.model_copy(
                update={
                    "steps_completed": staged.metrics.steps_completed + 1,
                    "total_execution_ms": staged.metrics.total_execution_ms + elapsed_ms,
                }
            )
            work.emit("step_completed", job_id=job_id, step_id=step_id, elapsed_ms=elapsed_ms)
        return {"stored": True, "result": result}

    @serialized
    async def step_fail(
        self, job_id: str, lease_id: str, step_id: str, kind: FailureKind, message: str
    ) -> dict[str, Any]:
        _check_step_id(step_id)
        job = await self._leased(job_id, lease_id, ["running", "checkpointed"])
        self._require(job, ["running", "checkpointed"])
        async with self._work() as work:
            staged = work.job(job)
            staged.metrics = staged.metrics.model_copy(update={"errors": staged.metrics.errors + 1})
            work.emit("step_failed", "warning", job_id=job_id, step_id=step_id, kind=kind)
            outcome = await self._fail(work, staged, kind, message)
        return outcome

    async def _fail(self, work: Work, job: Job, kind: FailureKind, message: str) -> dict[str, Any]:
        """A failure of a bound job, mapped to its recovery action (section 3.2)."""
        action = job.recovery.get(kind) or DEFAULT_RECOVERY[kind]
        if action == "restart":
            assert job.assigned_agent_id is not None, job
            await self._crash(work, job.assigned_agent_id, "crash", "step_fail")
            return {"action": action, "job_state": job.state, "backoff_ms": None}
        agent_id = job.assigned_agent_id
        job.error = JobError(
            kind=kind, message=message[:2000], needs_human=action == "human_escalation"
        )
        await self._transition(work, job, "failed", "step_fail", kind)
        await self._end_lease(work, job, "revoked")
        self._free_agent(work, job)
        backoff_ms: int | None = None
        if action == "human_escalation":
            work.emit("escalation", "warning", job_id=job.job_id, kind=kind)
        elif action != "fail" and job.retry_count < job.retries_max:
            job.retry_count += 1
            if action == "retry_with_backoff":
                backoff_ms = round(
                    min(self.limits.backoff_max_s, 2.0 ** (job.retry_count - 1)) * 1000
                )
                job.not_before = work.now + backoff_ms
            elif action == "fallback_agent" and agent_id is not None:
                job.excluded_agents = sorted({*job.excluded_agents, agent_id})
            elif action == "retry_with_feedback":
                job.feedback = [*job.feedback, message][-self.limits.feedback_items_max :]
            await self._transition(work, job, "pending", action, kind)
        else:
            work.emit("job_failed", "warning", job_id=job.job_id, kind=kind)
        return {"action": action, "job_state": job.state, "backoff_ms": backoff_ms}

    # ---- checkpoints and approvals -------------------------------------------------------

    @serialized
    async def checkpoint_job(self, job_id: str, lease_id: str, data: Any) -> Job:
        if _size(data) > self.limits.checkpoint_bytes_max:
            raise bad_argument(
                f"Checkpoint data exceeds checkpoint_bytes_max={self.limits.checkpoint_bytes_max}."
            )
        job = await self._leased(job_id, lease_id, ["running"])
        self._require(job, ["running"])
        memo = await self.store.completed_step_count(job_id)
        async with self._work() as work:
            staged = work.job(job)
            self._extend(work, staged)
            staged.checkpoint = {
                "memo_step_count": memo,
                "metrics": staged.metrics.model_dump(),
                "data": data,
                "created_at": work.now,
            }
            await self._transition(work, staged, "checkpointed", "checkpoint_job")
            work.emit("checkpoint_created", job_id=job_id)
        return staged

    @serialized
    async def resume_job(self, job_id: str, lease_id: str) -> Job:
        job = await self._leased(job_id, lease_id, ["checkpointed"])
        self._require(job, ["checkpointed"])
        async with self._work() as work:
            staged = work.job(job)
            self._extend(work, staged)
            await self._transition(work, staged, "running", "resume_job")
        return staged

    def gate(self, job: Job, oversight: Oversight, approval_seq: int) -> bool:
        """Whether an approval request gates (section 2.3); spot checks use the seeded draw."""
        if oversight != "spot_check":
            return True
        return spot_check_draw(job.job_id, approval_seq, self.seed) < SPOT_CHECK_P

    @serialized
    async def request_approval(
        self, job_id: str, lease_id: str, artifact: Any, confidence: float | None
    ) -> dict[str, Any]:
        if confidence is not None and not 0.0 <= confidence <= 1.0:
            raise bad_argument("confidence must be in [0, 1].")
        if _size(artifact) > self.limits.checkpoint_bytes_max:
            raise bad_argument("The artifact is too large.")
        job = await self._leased(job_id, lease_id, ["running"])
        self._require(job, ["running"])
        async with self._work() as work:
            staged = work.job(job)
            self._extend(work, staged)
            staged.approval_seq += 1
            gated = self.gate(staged, staged.oversight, staged.approval_seq)
            if gated:
                staged.approval_artifact = artifact
                await self._transition(work, staged, "waiting_approval", "request_approval")
                work.emit("approval_requested", job_id=job_id, confidence=confidence)
        return {"gated": gated, "state": staged.state}

    @serialized
    async def respond_approval(
        self,
        job_id: str,
        decision: str,
        feedback: str,
        invalidate_steps: str | list[str],
    ) -> Job:
        job = await self.job(job_id)
        self._require(job, ["waiting_approval"])
        async with self._work() as work:
            staged = work.job(job)
            if decision == "approve":
                staged.approval_artifact = None
                await self._transition(work, staged, "running", "respond_approval", "approve")
                return staged
            staged.approval_artifact = None
            if feedback:
                staged.feedback = [*staged.feedback, feedback][-self.limits.feedback_items_max :]
            if staged.retry_count < staged.retries_max:
                staged.retry_count += 1
                await self.store.invalidate_steps(
                    work.tx, job_id, None if invalidate_steps == "all" else list(invalidate_steps)
                )
                await self._end_lease(work, staged, "revoked")
                self._free_agent(work, staged)
                await self._transition(work, staged, "pending", "respond_approval", "reject")
            else:
                staged.error = JobError(kind="human_rejection", message=feedback or "rejected")
                await self._end_lease(work, staged, "revoked")
                self._free_agent(work, staged)
                await self._transition(
                    work, staged, "failed", "respond_approval", "human_rejection"
                )
                work.emit("job_failed", "warning", job_id=job_id, kind="human_rejection")
        return staged

    # ---- completion, cancel, retry -------------------------------------------------------

    @serialized
    async def complete_job(
        self, job_id: str, lease_id: str, result: Any, scores: dict[str, float] | None
    ) -> tuple[Job, dict[str, Any] | None]:
        if _size(result) > self.limits.step_result_bytes_max:
            raise reasoned(InvalidArgument, "result_too_large", "The job result is too large.")
        job = await self._leased(job_id, lease_id, ["running"])
        self._require(job, ["running"])
        evaluated: dict[str, Any] | None = None
        if scores is not None:
            raw = dict(scores)
            revisions: int | None = None
            revisions_max: int | None = None
            if "error_rate" not in raw:
                metrics = job.metrics
                raw["error_rate"] = metrics.errors / max(
                    1, metrics.steps_completed + metrics.errors
                )
            if "revision_count" not in raw:
                revisions, revisions_max = job.retry_count, max(1, job.retries_max)
            normalized = evaluation.normalize(raw, revisions=revisions, revisions_max=revisions_max)
        async with self._work() as work:
            staged = work.job(job)
            staged.result = result
            await self._transition(work, staged, "completed", "complete_job")
            await self._end_lease(work, staged, "released")
            self._free_agent(work, staged)
            work.emit("job_completed", job_id=job_id)
            if scores is not None and staged.assigned_agent_id is not None:
                evaluated = await self._record_evaluation(
                    work, staged.assigned_agent_id, normalized, self.weights, job_id
                )
        return staged, evaluated

    @serialized
    async def cancel_job(self, job_id: str, reason: str | None) -> Job:
        job = await self.job(job_id)
        self._require(job, ["pending", *sorted(BOUND)])
        async with self._work() as work:
            staged = work.job(job)
            await self._cancel(work, staged, "cancel_job", reason)
        return staged

    async def _cancel(self, work: Work, job: Job, trigger: str, reason: str | None) -> None:
        if job.state in BOUND:
            await self._end_lease(work, job, "revoked")
            self._free_agent(work, job)
            work.emit("agent_cancelled", job_id=job.job_id, agent_id=job.assigned_agent_id)
        elif not job.charged:
            client = work.client(job.client_id)
            client.reserved = max(0.0, client.reserved - job.cost)
        await self._transition(work, job, "cancelled", trigger, reason)
        for dependant_id in sorted(self.dependants.get(job.job_id, set())):
            dependant = self.jobs.get(dependant_id)
            if dependant is not None and work.job(dependant).state == "pending":
                await self._cancel(work, work.job(dependant), "dependency", "dependency_failed")

    @serialized
    async def retry_job(self, job_id: str, invalidate_steps: list[str]) -> Job:
        job = await self.job(job_id)
        self._require(job, ["failed"])
        if job.retry_count >= job.retries_max:
            raise reasoned(
                Conflict,
                "retries_exhausted",
                f"Job {job_id} used all {job.retries_max} retries.",
                retry_count=job.retry_count,
            )
        async with self._work() as work:
            staged = work.job(job)
            staged.retry_count += 1
            staged.not_before = work.now
            staged.error = None
            if invalidate_steps:
                await self.store.invalidate_steps(work.tx, job_id, invalidate_steps)
            await self._transition(work, staged, "pending", "retry_job")
        return staged

    # ---- supervision ---------------------------------------------------------------------

    async def _release_bound_job(
        self, work: Work, agent: Agent, reason: str, *, requeue: bool
    ) -> str | None:
        """Move the agent's bound job to failed, and back to pending when ``requeue``."""
        if agent.current_job_id is None:
            return None
        live = self.jobs.get(agent.current_job_id)
        if live is None:
            agent.current_job_id = None
            return None
        job = work.job(live)
        if job.state not in BOUND:
            return job.state
        kind = "agent_stopped" if reason == "agent_stopped" else "crash"
        if reason in ("exited_without_result", "restart_intensity_exceeded"):
            kind = reason
        job.error = JobError(kind=kind, message=reason)  # type: ignore[arg-type]  # literal kinds
        await self._transition(work, job, "failed", "supervisor", reason)
        await self._end_lease(work, job, "revoked")
        self._free_agent(work, job)
        if requeue:
            await self._transition(work, job, "pending", "restart", reason)
        else:
            work.emit("job_failed", "warning", job_id=job.job_id, kind=kind)
        return job.state

    async def _crash(self, work: Work, agent_id: str, reason: str, trigger: str) -> list[str]:
        """An abnormal termination of ``agent_id``: intensity check, then the restart set."""
        agent = work.agent(agent_id)
        group = work.group(agent.group_id)
        if agent.restart == "temporary":
            await self._release_bound_job(work, agent, "crash", requeue=False)
            agent.status = "stopped"
            work.emit("agent_terminated", agent_id=agent_id, reason=reason)
            return []
        group.restart_log = [*window(group.restart_log, work.now, group.period_s), work.now]
        if len(group.restart_log) > group.restarts_max:
            await self._terminate_group(work, group)
            return []
        members = [a for a in self.agents.values() if a.group_id == group.group_id]
        restarted: list[str] = []
        for member in restart_set(group.strategy, agent, members):
            staged = work.agent(member.agent_id)
            staged.restart_count += 1
            restarted.append(staged.agent_id)
            if staged.agent_id == agent_id or staged.shutdown_s == 0:
                why = reason if staged.agent_id == agent_id else "sibling_restart"
                await self._release_bound_job(work, staged, why, requeue=True)
            elif staged.current_job_id is not None:
                staged.shutdown_deadline = work.now + round(staged.shutdown_s * 1000)
        work.emit("group_restarted", group_id=group.group_id, agents=restarted, trigger=trigger)
        work.uris.add(f"scheduler://groups/{group.group_id}")
        return restarted

    async def _terminate_group(self, work: Work, group: Group) -> None:
        for member in [a for a in self.agents.values() if a.group_id == group.group_id]:
            staged = work.agent(member.agent_id)
            await self._release_bound_job(work, staged, "restart_intensity_exceeded", requeue=False)
            if staged.status != "stopped":
                staged.status = "idle"
        group.status = "terminated"
        work.emit("group_terminated", "warning", group_id=group.group_id)
        work.uris.add(f"scheduler://groups/{group.group_id}")
        parent_id = group.parent_id
        if parent_id is None:
            self.halted = True
            await self.store.set_meta(work.tx, "halted", "1")
            return
        parent = work.group(parent_id)
        parent.restart_log = [*window(parent.restart_log, work.now, parent.period_s), work.now]
        if len(parent.restart_log) > parent.restarts_max:
            await self._terminate_group(work, parent)
            return
        group.status = "active"
        group.restart_log = []
        work.emit("group_restarted", group_id=group.group_id, agents=[], trigger="parent")

    @serialized
    async def report_exit(
        self, agent_id: str, exit_code: int | None, reason: str
    ) -> dict[str, Any]:
        self.agent(agent_id)
        async with self._work() as work:
            agent = work.agent(agent_id)
            job_id = agent.current_job_id
            restarted: list[str] = []
            if exit_code is None or exit_code != 0:
                restarted = await self._crash(work, agent_id, "crash", f"exit:{reason}"[:200])
            elif agent.restart == "permanent":
                await self._release_bound_job(work, agent, "exited_without_result", requeue=True)
            else:
                await self._release_bound_job(work, agent, "exited_without_result", requeue=False)
                if agent.restart == "temporary":
                    agent.status = "stopped"
            job_state = None
            if job_id is not None:
                staged_job = work.jobs.get(job_id) or self.jobs.get(job_id)
                job_state = None if staged_job is None else staged_job.state
            group_status = work.group(agent.group_id).status
        return {"restarted": restarted, "job_state": job_state, "group_status": group_status}

    # ---- background: leases, timeouts, shutdown grace ------------------------------------

    @serialized
    async def sweep(self) -> int:
        """Process expired leases (as crashes), job timeouts and shutdown deadlines."""
        return await self._sweep()

    async def _sweep(self) -> int:
        now = self.clock.now_ms()
        handled = 0
        for job in list(self.jobs.values()):
            current = self.jobs.get(job.job_id)
            if current is None or current.state not in BOUND:
                continue
            if current.lease_expires_at is not None and current.lease_expires_at <= now:
                handled += await self._expire(current.job_id)
            elif (
                current.state in RUNTIME
                and current.run_started_at is not None
                and (
                    current.run_elapsed_ms + now - current.run_started_at > current.timeout_s * 1000
                )
            ):
                handled += await self._time_out(current.job_id)
        for agent in list(self.agents.values()):
            if agent.shutdown_deadline is not None and agent.shutdown_deadline <= now:
                async with self._work() as work:
                    staged = work.agent(agent.agent_id)
                    await self._release_bound_job(work, staged, "sibling_restart", requeue=True)
                    staged.shutdown_deadline = None
                handled += 1
        return handled

    async def _expire(self, job_id: str) -> int:
        async with self._work() as work:
            live = self.jobs.get(job_id)
            if live is None or live.state not in BOUND or live.lease_expires_at is None:
                return 0
            if live.lease_expires_at > work.now or live.assigned_agent_id is None:
                return 0
            job = work.job(live)
            assert job.lease_id is not None, job
            await self.store.put_lease(
                work.tx,
                Lease(
                    lease_id=job.lease_id,
                    job_id=job_id,
                    agent_id=live.assigned_agent_id,
                    expires_at=live.lease_expires_at,
                    status="expired",
                ),
            )
            job.lease_id = None
            await self._crash(work, live.assigned_agent_id, "crash", "lease_expired")
        return 1

    async def _time_out(self, job_id: str) -> int:
        async with self._work() as work:
            live = self.jobs.get(job_id)
            if live is None or live.state not in RUNTIME:
                return 0
            await self._fail(work, work.job(live), "timeout", "job timeout_s exceeded")
        return 1

    async def run_sweeper(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            await anyio.sleep(self.limits.sweep_period_s)
            await self.sweep()

    @serialized
    async def advance_clock(self, seconds: float) -> int:
        assert isinstance(self.clock, FrozenClock), self.clock
        if not math.isfinite(seconds) or seconds < 0:
            raise bad_argument("seconds must be a finite number >= 0.")
        async with self._work() as work:
            self.clock.value_ms += round(seconds * 1000)
            await self.store.set_meta(work.tx, "test_clock_ms", str(self.clock.value_ms))
        await self._sweep()
        return self.clock.value_ms

    # ---- evaluation ----------------------------------------------------------------------

    @serialized
    async def evaluate(
        self,
        agent_id: str,
        scores: dict[str, float],
        weights: dict[str, float] | None,
        preset: str | None,
        invert: list[str] | None,
        revisions: int | None,
        revisions_max: int | None,
    ) -> dict[str, Any]:
        self.agent(agent_id)
        if weights is not None and preset is not None:
            raise bad_argument("Give weights or preset, not both.")
        if preset is not None and preset not in evaluation.PRESETS:
            raise bad_argument(
                f"Unknown preset {preset!r}; known: {', '.join(evaluation.PRESETS)}."
            )
        chosen = (
            evaluation.validate_weights(weights)
            if weights is not None
            else evaluation.PRESETS[preset]
            if preset is not None
            else self.weights
        )
        normalized = evaluation.normalize(
            scores,
            evaluation.DEFAULT_INVERT if invert is None else invert,
            revisions,
            revisions_max,
        )
        async with self._work() as work:
            return await self._record_evaluation(work, agent_id, normalized, chosen, None)

    async def _record_evaluation(
        self,
        work: Work,
        agent_id: str,
        normalized: dict[str, float],
        weights: dict[str, float],
        job_id: str | None,
    ) -> dict[str, Any]:
        score = evaluation.composite(normalized, weights)
        previous, count = work.reputations.get(agent_id) or self.reputations.get(agent_id, (0.0, 0))
        reputation = evaluation.ewma(previous if count else None, score)
        body = {
            "agent_id": agent_id,
            "job_id": job_id,
            "normalized": normalized,
            "weights": weights,
            "composite": score,
            "reputation": reputation,
            "at": work.now,
        }
        await self.store.save_evaluation(work.tx, agent_id, body, reputation, count + 1, work.now)
        # Dispatch reads the reputation map; it changes only after this commit (_install).
        work.reputations[agent_id] = (reputation, count + 1)
        work.emit("evaluation_completed", agent_id=agent_id, composite=score)
        work.uris.add(f"scheduler://evaluations/{agent_id}")
        return {
            "normalized": normalized,
            "composite": score,
            "composite_rounded": round(score, 4),
            "reputation": reputation,
            "evaluation_count": count + 1,
        }

    def reputation(self, agent_id: str) -> float:
        self.agent(agent_id)
        return self.reputations.get(agent_id, (0.0, 0))[0]

    @serialized
    async def set_weights(self, weights: dict[str, float]) -> dict[str, float]:
        checked = evaluation.validate_weights(weights)
        async with self._work() as work:
            await self.store.set_meta(work.tx, "weights", json.dumps(checked))
        self.weights = checked
        return checked

    # ---- reads ---------------------------------------------------------------------------

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return after the next commit, or after ``timeout_s``."""
        changed = self._changed
        with anyio.move_on_after(timeout_s):
            await changed.wait()

    async def stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = {"idle": 0, "busy": 0, "stopped": 0}
        for agent in self.agents.values():
            by_status[agent.status] += 1
        return {
            "queue_size": len(self.index),
            "dispatched_count": await self.store.count_dispatched(),
            "clients": len(self.clients),
            "agents_by_status": by_status,
            "jobs_by_state": await self.store.jobs_by_state(),
            "halted": self.halted,
        }

    def simulate_queue(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` jobs for an unconstrained agent, on a copy, without new arrivals."""
        balances = {c.client_id: c.balance for c in self.clients.values()}
        avruntimes = {c.client_id: c.avruntime for c in self.clients.values()}
        queues = {client: self.index.queue_of(client) for client in self.index.clients_with_queue()}
        strict = self.settings.tier_policy == "strict"
        order: list[dict[str, Any]] = []
        while len(order) < count and queues:

            def key(client_id: str) -> tuple[int, float, int]:
                rank = 0 if not strict or self.clients[client_id].tier == "contracted" else 1
                return (rank, avruntimes[client_id], self.jobs[queues[client_id][0]].seq)

            client_id = min(queues, key=key)
            job = self.jobs[queues[client_id].pop(0)]
            if not queues[client_id]:
                del queues[client_id]
            tier = self.clients[client_id].tier
            avruntimes[client_id] += increment(
                job.cost, balances[client_id], tier, self.settings.beta, 0.0
            )
            if not job.charged:
                balances[client_id] -= job.cost
            order.append({"job_id": job.job_id, "client_id": client_id, "seq": job.seq})
        return order

    def config_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "cr0": 1000.0,
            "tier_weights": {"contracted": 4.0, "marketplace": 1.0},
            "default_cost": 1.0,
            "tier_policy": self.settings.tier_policy,
            "beta": self.settings.beta,
            "alpha": evaluation.ALPHA,
            "spot_check_p": SPOT_CHECK_P,
            "weights": self.weights,
            "presets": evaluation.PRESETS,
            "pool": {"restarts_max": 5, "period_s": 60},
            "root": {
                "restarts_max": self.limits.root_restarts_max,
                "period_s": self.limits.root_period_s,
            },
            "agent_restart": "transient",
            "shutdown_s": 30,
            "retries_max": 3,
            "timeout_s": 1800,
            "lease_ttl_s": self.limits.lease_ttl_s,
            "sweep_period_s": self.limits.sweep_period_s,
            "backoff_max_s": self.limits.backoff_max_s,
            "limits": self.limits.model_dump(),
            "test_mode": self.settings.test_mode,
        }
        if self.settings.test_mode:
            document["seed"] = self.seed
        return document


def spot_check_draw(job_id: str, approval_seq: int, seed: str) -> float:
    """u = first 8 bytes of SHA-256(job_id ":" approval_seq ":" seed) / 2^64."""
    digest = hashlib.sha256(f"{job_id}:{approval_seq}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _check_credits(credits: float) -> None:
    if not math.isfinite(credits) or credits < 0:
        raise bad_argument(f"credits={credits} must be a finite number >= 0.")


def _check_step_id(step_id: str) -> None:
    if not step_id or len(step_id) > 256:
        raise bad_argument("step_id must be 1-256 characters.")


def _dispatch_from_dict(stored: dict[str, Any]) -> DispatchResult:
    job = None if stored["job"] is None else Job.model_validate(stored["job"])
    return DispatchResult(
        job,
        stored["lease_id"],
        stored["lease_expires_at"],
        stored["checkpoint"],
        stored["feedback"],
        stored["avruntime_after"],
    )


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """One cycle of the dependency graph as its keys in order, or [] when acyclic."""
    color: dict[str, int] = dict.fromkeys(graph, 0)
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        color[node] = 1
        stack.append(node)
        for dep in graph[node]:
            if color[dep] == 1:
                return stack[stack.index(dep) :]
            if color[dep] == 0:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[node] = 2
        return []

    for node in graph:
        if color[node] == 0:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def _topological(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks with every dependency before its dependants, otherwise in the given order."""
    by_key = {task["key"]: task for task in tasks}
    done: set[str] = set()
    ordered: list[dict[str, Any]] = []

    def place(key: str) -> None:
        if key in done:
            return
        for dep in by_key[key].get("depends_on", []):
            place(dep)
        done.add(key)
        ordered.append(by_key[key])

    for task in tasks:
        place(task["key"])
    return ordered
