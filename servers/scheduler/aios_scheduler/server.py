"""The scheduler's MCP surface (spec/scheduler.md section 5): parse, call the service, shape."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning

from aios_scheduler.config import SchedulerSettings
from aios_scheduler.errors import bad_argument
from aios_scheduler.models import Agent, Client, Group, Job
from aios_scheduler.pipelines import PipelineService
from aios_scheduler.requests import (
    CreateGroup,
    DagTask,
    RegisterAgent,
    RegisterClient,
    SubmitJob,
    parse,
)
from aios_scheduler.service import TELEMETRY_SINK, SchedulerService
from aios_scheduler.subscriptions import Subscriptions
from aios_scheduler.workers import ListeningUrl, WorkerSupervisor
from aios_shared.errors import mapped_tool_errors
from aios_shared.runner import lowlevel

__all__ = ["AppState", "build_server"]

Ctx = Context["AppState", Any]


class AppState:
    """What the lifespan hands to every tool."""

    def __init__(self, service: SchedulerService, pipelines: PipelineService) -> None:
        self.service = service
        self.pipelines = pipelines


class Holder:
    """The running lifespan's state for static resources, which get no request context."""

    def __init__(self) -> None:
        self.state: AppState | None = None

    def service(self) -> SchedulerService:
        assert self.state is not None, "resource read outside the server lifespan"
        return self.state.service


def _state(ctx: Ctx) -> AppState:
    """The lifespan state; also starts collecting this call's telemetry (the sink is a
    context variable, so it belongs to this request's task only)."""
    TELEMETRY_SINK.set([])
    state: AppState = ctx.request_context.lifespan_context
    return state


def build_server(
    settings: SchedulerSettings, listening: ListeningUrl | None = None
) -> MCPServer[AppState]:
    """The scheduler as an MCP server; the lifespan owns the database and background tasks,
    and the worker processes of ``settings.agents`` (which need ``listening``: the URL workers
    connect to)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with SchedulerService.open(settings) as service, anyio.create_task_group() as tg:
            await tg.start(service.run_sweeper)
            pipelines = PipelineService(service)
            await pipelines.load()
            service.listeners.append(subscriptions.committed)
            await tg.start(subscriptions.deliver)
            if settings.agents:
                assert listening is not None, "agent workers need the HTTP listening URL"
                await tg.start(WorkerSupervisor(service, settings, listening).run)
            holder.state = AppState(service, pipelines)
            yield holder.state
            holder.state = None
            tg.cancel_scope.cancel()

    holder = Holder()
    subscriptions = Subscriptions()
    server: MCPServer[AppState] = MCPServer(
        "aios-scheduler",
        version="0.1.0",
        instructions="Credit-weighted fair job scheduling, supervised agents, durable steps.",
        lifespan=lifespan,
    )

    async def committed(ctx: Ctx, tool: str) -> None:
        """After a tool's COMMIT: the test-mode fault hook (die before the reply), then the
        telemetry records of the call as ``notifications/message`` (logger
        ``scheduler.telemetry``)."""
        if settings.test_mode and settings.crash_after_commit == tool:
            os._exit(137)
        await _send_telemetry(ctx)

    _register_client_tools(server, committed)
    _register_job_tools(server, committed)
    _register_worker_tools(server, committed)
    _register_evaluation_tools(server, committed)
    _register_pipeline_tools(server, committed)
    _register_resources(server, holder)
    inner = lowlevel(server)
    inner.add_request_handler(
        "resources/subscribe", types.SubscribeRequestParams, subscriptions.subscribe
    )
    inner.add_request_handler(
        "resources/unsubscribe", types.UnsubscribeRequestParams, subscriptions.unsubscribe
    )
    if settings.test_mode:

        @server.tool()
        @mapped_tool_errors
        async def test_advance_clock(seconds: float, ctx: Ctx) -> dict[str, Any]:
            """Test mode only: move the frozen clock forward and run one sweep."""
            now = await _state(ctx).service.advance_clock(seconds)
            return {"now": now}

    return server


Committed = Callable[[Ctx, str], Awaitable[None]]


async def _send_telemetry(ctx: Ctx) -> None:
    sink = TELEMETRY_SINK.get()
    if not sink:
        return
    session = ctx.request_context.session
    with warnings.catch_warnings():
        # notifications/message is deprecated from 2026-07-28 on, but spec section 5 wants
        # it; older sessions get it, newer ones only when the request opted in.
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        for entry in sink:
            await session.send_log_message(
                "warning" if entry.level == "warning" else "info",
                {"event": entry.event, **entry.data},
                logger="scheduler.telemetry",
                related_request_id=ctx.request_id,
            )
    sink.clear()


def _register_client_tools(server: MCPServer[AppState], committed: Committed) -> None:
    @server.tool()
    @mapped_tool_errors
    async def register_client(client_id: str, tier: str, credits: float, ctx: Ctx) -> Client:
        """Register a credit-holding client (tier contracted or marketplace). A client id is
        registered once; a second call is refused with already_exists."""
        request = parse(RegisterClient, {"client_id": client_id, "tier": tier, "credits": credits})
        client = await _state(ctx).service.register_client(
            request.client_id, request.tier, request.credits
        )
        await committed(ctx, "register_client")
        return client

    @server.tool()
    @mapped_tool_errors
    async def update_client(
        client_id: str,
        ctx: Ctx,
        credits: float | None = None,
        credit_delta: float | None = None,
        tier: str | None = None,
    ) -> Client:
        """Set a client's credits (absolute) or add credit_delta, or change its tier. The
        balance may not fall below the credits reserved by queued jobs; avruntime is kept."""
        if tier is not None and tier not in ("contracted", "marketplace"):
            raise bad_argument(f"tier {tier!r} must be contracted or marketplace.")
        client = await _state(ctx).service.update_client(
            client_id,
            credits,
            credit_delta,
            tier,  # type: ignore[arg-type]  # checked against the literal above
        )
        await committed(ctx, "update_client")
        return client

    @server.tool()
    @mapped_tool_errors
    async def create_group(
        group_id: str,
        strategy: str,
        ctx: Ctx,
        restarts_max: int = 5,
        period_s: float = 60.0,
        parent_id: str = "root",
    ) -> Group:
        """Create a supervision group: one_for_one, one_for_all or rest_for_one, terminated
        when more than restarts_max crashes fall in period_s seconds."""
        request = parse(
            CreateGroup,
            {
                "group_id": group_id,
                "strategy": strategy,
                "restarts_max": restarts_max,
                "period_s": period_s,
                "parent_id": parent_id,
            },
        )
        group = await _state(ctx).service.create_group(
            request.group_id,
            request.strategy,
            request.restarts_max,
            request.period_s,
            request.parent_id,
        )
        await committed(ctx, "create_group")
        return group

    @server.tool()
    @mapped_tool_errors
    async def reset_group(group_id: str, ctx: Ctx) -> Group:
        """Reactivate a group with an empty restart log; on root it also clears a halt."""
        group = await _state(ctx).service.reset_group(group_id)
        await committed(ctx, "reset_group")
        return group

    @server.tool()
    @mapped_tool_errors
    async def register_agent(
        agent_id: str,
        profile: dict[str, Any],
        ctx: Ctx,
        cost: float = 1.0,
        oversight: str = "autonomous_escalation",
        group_id: str = "pool",
        restart: str = "transient",
        shutdown_s: float = 30.0,
    ) -> Agent:
        """Register a worker agent with its capability profile (immutable afterwards), its cost
        per job, its oversight level, its supervision group and restart type."""
        request = parse(
            RegisterAgent,
            {
                "agent_id": agent_id,
                "profile": profile,
                "cost": cost,
                "oversight": oversight,
                "group_id": group_id,
                "restart": restart,
                "shutdown_s": shutdown_s,
            },
        )
        agent = await _state(ctx).service.register_agent(
            request.agent_id,
            request.profile,
            request.cost,
            request.oversight,
            request.group_id,
            request.restart,
            request.shutdown_s,
        )
        await committed(ctx, "register_agent")
        return agent

    @server.tool()
    @mapped_tool_errors
    async def stop_agent(agent_id: str, ctx: Ctx) -> Agent:
        """Stop an agent; its bound job goes back to the queue (reason agent_stopped)."""
        agent = await _state(ctx).service.stop_agent(agent_id)
        await committed(ctx, "stop_agent")
        return agent


def _register_job_tools(server: MCPServer[AppState], committed: Committed) -> None:
    @server.tool()
    @mapped_tool_errors
    async def submit_job(
        client_id: str,
        task: str,
        ctx: Ctx,
        input: Any = None,
        cost: float | None = None,
        agent_id: str | None = None,
        required_capabilities: list[str] | None = None,
        task_domain: str | None = None,
        oversight: str | None = None,
        retries_max: int = 3,
        timeout_s: float = 1800.0,
        depends_on: list[str] | None = None,
        recovery: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Queue a job for a client. Its cost (credits) is reserved now and charged once at the
        first dispatch. Fails with insufficient_credits when balance - reserved < cost, and
        with resource_exhausted when the queue is full."""
        fields = {
            "client_id": client_id,
            "task": task,
            "input": input,
            "cost": cost,
            "agent_id": agent_id,
            "required_capabilities": required_capabilities or [],
            "task_domain": task_domain,
            "oversight": oversight,
            "retries_max": retries_max,
            "timeout_s": timeout_s,
            "depends_on": depends_on or [],
            "recovery": recovery or {},
            "idempotency_key": idempotency_key,
        }
        request = parse(SubmitJob, fields)
        service = _state(ctx).service
        job = await service.submit_job(request.model_dump())
        await committed(ctx, "submit_job")
        return {
            "job_id": job.job_id,
            "state": job.state,
            "seq": job.seq,
            "client_avruntime": service.clients[job.client_id].avruntime,
        }

    @server.tool()
    @mapped_tool_errors
    async def submit_dag(client_id: str, tasks: list[dict[str, Any]], ctx: Ctx) -> dict[str, Any]:
        """Submit a graph of tasks at once (depends_on names other keys). Cycles are refused
        with cycle_detected; admission is atomic, so nothing is created on any error."""
        parsed = [parse(DagTask, task) for task in tasks]
        jobs = await _state(ctx).service.submit_dag(client_id, [t.model_dump() for t in parsed])
        await committed(ctx, "submit_dag")
        keys = [task.key for task in _ordered(parsed, jobs)]
        return {
            "jobs": [
                {"key": key, "job_id": job.job_id, "level": job.level}
                for key, job in zip(keys, jobs, strict=True)
            ]
        }

    @server.tool()
    @mapped_tool_errors
    async def get_job(job_id: str, ctx: Ctx) -> Job:
        """One job with its state, lease, checkpoint, result, error and metrics."""
        return await _state(ctx).service.job(job_id)

    @server.tool()
    @mapped_tool_errors
    async def list_jobs(
        ctx: Ctx,
        client_id: str | None = None,
        state: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Jobs in submission order, filtered; pass next_cursor back for the next page."""
        service = _state(ctx).service
        if not 1 <= limit <= service.limits.list_limit_max:
            raise bad_argument(f"limit must be 1-{service.limits.list_limit_max}.")
        after = 0
        if cursor is not None:
            if not cursor.isdigit():
                raise bad_argument("cursor is not one this server returned.")
            after = int(cursor)
        jobs = await service.store.list_jobs(client_id, state, agent_id, after, limit)
        next_cursor = str(jobs[-1].seq) if len(jobs) == limit else None
        return {"jobs": [job.model_dump(mode="json") for job in jobs], "next_cursor": next_cursor}

    @server.tool()
    @mapped_tool_errors
    async def wait_job(job_id: str, states: list[str], ctx: Ctx, timeout_s: float = 30.0) -> Job:
        """Wait until the job is in one of ``states`` (or timeout_s passes, at most 300 s) and
        return it; progress notifications report completed plus cached steps."""
        service = _state(ctx).service
        if not 0 <= timeout_s <= service.limits.wait_job_s_max:
            raise bad_argument(f"timeout_s must be 0-{service.limits.wait_job_s_max:g}.")
        job = await service.job(job_id)
        with anyio.move_on_after(timeout_s):
            while job.state not in states:
                await ctx.report_progress(
                    job.metrics.steps_completed + job.metrics.steps_cached, None, job.state
                )
                await service.wait_for_change(service.limits.sweep_period_s)
                job = await service.job(job_id)
        return job

    @server.tool()
    @mapped_tool_errors
    async def cancel_job(job_id: str, ctx: Ctx, reason: str | None = None) -> Job:
        """Cancel a pending or bound job at once: its lease is revoked, its agent freed, and a
        never-charged job's reservation released. Finished jobs are refused."""
        job = await _state(ctx).service.cancel_job(job_id, reason)
        await committed(ctx, "cancel_job")
        return job

    @server.tool()
    @mapped_tool_errors
    async def retry_job(job_id: str, ctx: Ctx, invalidate_steps: list[str] | None = None) -> Job:
        """Move a failed job back to pending (uses one retry); optionally forget named steps."""
        job = await _state(ctx).service.retry_job(job_id, invalidate_steps or [])
        await committed(ctx, "retry_job")
        return job

    @server.tool()
    @mapped_tool_errors
    async def respond_approval(
        job_id: str,
        decision: str,
        ctx: Ctx,
        feedback: str = "",
        invalidate_steps: str | list[str] = "all",
    ) -> Job:
        """Approve (back to running) or reject (back to the queue with feedback and the memo
        invalidated, or failed when retries are exhausted) a job waiting for approval."""
        if decision not in ("approve", "reject"):
            raise bad_argument("decision must be approve or reject.")
        if isinstance(invalidate_steps, str) and invalidate_steps != "all":
            raise bad_argument('invalidate_steps is "all" or a list of step ids.')
        job = await _state(ctx).service.respond_approval(
            job_id, decision, feedback[:4000], invalidate_steps
        )
        await committed(ctx, "respond_approval")
        return job

    @server.tool()
    @mapped_tool_errors
    async def get_stats(ctx: Ctx) -> dict[str, Any]:
        """Queue size, dispatch count, clients, agents by status, jobs by state, halt flag."""
        return await _state(ctx).service.stats()


def _register_worker_tools(server: MCPServer[AppState], committed: Committed) -> None:
    @server.tool()
    @mapped_tool_errors
    async def dispatch_next(
        agent_id: str, ctx: Ctx, wait_s: float = 0.0, request_id: str | None = None
    ) -> dict[str, Any]:
        """Lease the next job for an idle agent: the queued job of the client with the lowest
        virtual runtime that the agent can run. Returns job null when there is none (waits up
        to wait_s <= 30 s for one). Repeat a lost call with the same request_id."""
        service = _state(ctx).service
        if not 0 <= wait_s <= service.limits.dispatch_wait_s_max:
            raise bad_argument(f"wait_s must be 0-{service.limits.dispatch_wait_s_max:g}.")
        result = await service.dispatch_next(agent_id, wait_s, request_id)
        await committed(ctx, "dispatch_next")
        return result.as_dict()

    @server.tool()
    @mapped_tool_errors
    async def heartbeat(job_id: str, lease_id: str, ctx: Ctx) -> dict[str, Any]:
        """Extend the lease; says whether the worker should stop (shutdown_requested)."""
        result = await _state(ctx).service.heartbeat(job_id, lease_id)
        await committed(ctx, "heartbeat")
        return result

    @server.tool()
    @mapped_tool_errors
    async def step_begin(job_id: str, lease_id: str, step_id: str, ctx: Ctx) -> dict[str, Any]:
        """Start a durable step: cached true with the stored result when it already completed
        (do not run it again), else cached false and the attempt number."""
        result = await _state(ctx).service.step_begin(job_id, lease_id, step_id)
        await committed(ctx, "step_begin")
        return result

    @server.tool()
    @mapped_tool_errors
    async def step_complete(
        job_id: str, lease_id: str, step_id: str, result: Any, elapsed_ms: int, ctx: Ctx
    ) -> dict[str, Any]:
        """Memoize a step's result (at most 1 MiB). The first completion wins: a second one
        returns stored false with the original result."""
        outcome = await _state(ctx).service.step_complete(
            job_id, lease_id, step_id, result, elapsed_ms
        )
        await committed(ctx, "step_complete")
        return outcome

    @server.tool()
    @mapped_tool_errors
    async def step_fail(
        job_id: str, lease_id: str, step_id: str, kind: str, message: str, ctx: Ctx
    ) -> dict[str, Any]:
        """Report a failed step (crash, timeout, resource_exhaustion, invalid_output); the job
        follows its recovery action: restart, retry with backoff, fallback agent, escalation."""
        if kind not in ("crash", "timeout", "resource_exhaustion", "invalid_output"):
            raise bad_argument(f"kind {kind!r} is not a failure kind.")
        outcome = await _state(
            ctx
        ).service.step_fail(
            job_id,
            lease_id,
            step_id,
            kind,  # type: ignore[arg-type]  # checked against the literal above
            message[:2000],
        )
        await committed(ctx, "step_fail")
        return outcome

    @server.tool()
    @mapped_tool_errors
    async def checkpoint_job(job_id: str, lease_id: str, ctx: Ctx, data: Any = None) -> Job:
        """Snapshot a running job (running -> checkpointed); resume_job continues it."""
        job = await _state(ctx).service.checkpoint_job(job_id, lease_id, data)
        await committed(ctx, "checkpoint_job")
        return job

    @server.tool()
    @mapped_tool_errors
    async def resume_job(job_id: str, lease_id: str, ctx: Ctx) -> Job:
        """Continue a checkpointed job (checkpointed -> running); the job carries the snapshot."""
        job = await _state(ctx).service.resume_job(job_id, lease_id)
        await committed(ctx, "resume_job")
        return job

    @server.tool()
    @mapped_tool_errors
    async def request_approval(
        job_id: str, lease_id: str, artifact: Any, ctx: Ctx, confidence: float | None = None
    ) -> dict[str, Any]:
        """Ask for human approval of an artifact. Whether it gates depends on the job's
        oversight (supervised and autonomous_escalation always; spot_check 30 %, seeded)."""
        result = await _state(ctx).service.request_approval(job_id, lease_id, artifact, confidence)
        await committed(ctx, "request_approval")
        return result

    @server.tool()
    @mapped_tool_errors
    async def complete_job(
        job_id: str,
        lease_id: str,
        result: Any,
        ctx: Ctx,
        scores: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Finish a running job with its result; optional scores record an evaluation."""
        job, evaluated = await _state(ctx).service.complete_job(job_id, lease_id, result, scores)
        await committed(ctx, "complete_job")
        return {"job": job.model_dump(mode="json"), "evaluation": evaluated}

    @server.tool()
    @mapped_tool_errors
    async def report_exit(
        agent_id: str, ctx: Ctx, exit_code: int | None = None, reason: str = ""
    ) -> dict[str, Any]:
        """Report that an agent's worker process exited (nonzero or missing code = crash)."""
        result = await _state(ctx).service.report_exit(agent_id, exit_code, reason[:500])
        await committed(ctx, "report_exit")
        return result


def _register_evaluation_tools(server: MCPServer[AppState], committed: Committed) -> None:
    @server.tool()
    @mapped_tool_errors
    async def evaluate(
        agent_id: str,
        scores: dict[str, float],
        ctx: Ctx,
        weights: dict[str, float] | None = None,
        preset: str | None = None,
        invert: list[str] | None = None,
        revisions: int | None = None,
        revisions_max: int | None = None,
    ) -> dict[str, Any]:
        """Score finished work on six dimensions (quality, adherence, speed, cost, error_rate,
        revision_count; raw values in [0, 1], the last two inverted) and update the agent's
        EWMA reputation (alpha 0.3)."""
        result = await _state(ctx).service.evaluate(
            agent_id, scores, weights, preset, invert, revisions, revisions_max
        )
        await committed(ctx, "evaluate")
        return result

    @server.tool()
    @mapped_tool_errors
    async def get_reputation(agent_id: str, ctx: Ctx) -> float:
        """An agent's reputation (0 before any evaluation)."""
        return _state(ctx).service.reputation(agent_id)

    @server.tool()
    @mapped_tool_errors
    async def rank_agents(ctx: Ctx, limit: int = 50) -> dict[str, Any]:
        """Agents by reputation, best first (ties by agent id)."""
        if not 1 <= limit <= 500:
            raise bad_argument("limit must be 1-500.")
        service = _state(ctx).service
        ranked = sorted(
            (
                (agent_id, service.reputations.get(agent_id, (0.0, 0))[0])
                for agent_id in service.agents
            ),
            key=lambda pair: (-pair[1], pair[0]),
        )[:limit]
        return {"agents": [{"agent_id": a, "reputation": r} for a, r in ranked]}

    @server.tool()
    @mapped_tool_errors
    async def set_weights(weights: dict[str, float], ctx: Ctx) -> dict[str, float]:
        """Set the server's default evaluation weights (six keys, summing to 1)."""
        result = await _state(ctx).service.set_weights(weights)
        await committed(ctx, "set_weights")
        return result


def _register_pipeline_tools(server: MCPServer[AppState], committed: Committed) -> None:
    @server.tool()
    @mapped_tool_errors
    async def create_pipeline(
        name: str, stages: list[dict[str, Any]], ctx: Ctx, supervise: bool = False
    ) -> dict[str, Any]:
        """Create a streaming pipeline of ordered stages; a stage may only subscribe to event
        types that earlier stages publish (pipeline_constraint_violation lists every breach)."""
        pipeline_id = await _state(ctx).pipelines.create(name, stages, supervise)
        await committed(ctx, "create_pipeline")
        return {"pipeline_id": pipeline_id}

    @server.tool()
    @mapped_tool_errors
    async def publish_event(
        pipeline_id: str, stage: str, event_type: str, ctx: Ctx, data: Any = None
    ) -> dict[str, Any]:
        """Append an event of a type the stage publishes; sequences are gap-free per pipeline."""
        result = await _state(ctx).pipelines.publish(pipeline_id, stage, event_type, data)
        await committed(ctx, "publish_event")
        return result

    @server.tool()
    @mapped_tool_errors
    async def read_events(
        pipeline_id: str,
        stage: str,
        ctx: Ctx,
        after_seq: int | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Events of the types the stage subscribes to, in sequence order, after its acked
        cursor (or after_seq)."""
        events = await _state(ctx).pipelines.read(pipeline_id, stage, after_seq, limit)
        return {"events": events}

    @server.tool()
    @mapped_tool_errors
    async def ack_events(pipeline_id: str, stage: str, up_to_seq: int, ctx: Ctx) -> dict[str, Any]:
        """Advance the stage's durable cursor (never backwards)."""
        cursor = await _state(ctx).pipelines.ack(pipeline_id, stage, up_to_seq)
        await committed(ctx, "ack_events")
        return {"cursor": cursor}

    @server.tool()
    @mapped_tool_errors
    async def complete_pipeline(pipeline_id: str, status: str, ctx: Ctx) -> dict[str, Any]:
        """Close a pipeline as completed or failed; later publishes are refused."""
        pipeline = await _state(ctx).pipelines.complete(pipeline_id, status)
        await committed(ctx, "complete_pipeline")
        return pipeline


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _register_resources(server: MCPServer[AppState], holder: Holder) -> None:
    def service(ctx: Ctx) -> SchedulerService:
        return _state(ctx).service

    @server.resource("scheduler://stats", mime_type="application/json")
    async def stats_resource() -> str:
        """Queue and dispatch statistics."""
        return _json(await holder.service().stats())

    @server.resource("scheduler://config", mime_type="application/json")
    async def config_resource() -> str:
        """Every scheduling constant and limit (and the spot-check seed in test mode)."""
        return _json(holder.service().config_document())

    @server.resource("scheduler://state/digest", mime_type="application/json")
    async def digest_resource() -> str:
        """SHA-256 over a canonical dump of the durable tables."""
        return _json({"digest": await holder.service().store.digest()})

    @server.resource("scheduler://queue", mime_type="application/json")
    async def queue_resource() -> str:
        """The next 100 jobs in dispatch order for an unconstrained agent (simulated)."""
        return _json({"jobs": holder.service().simulate_queue(100)})

    @server.resource("scheduler://clients/{client_id}", mime_type="application/json")
    async def client_resource(client_id: str, ctx: Ctx) -> str:
        """One client: tier, balance, reserved credits, avruntime, ledger."""
        found = service(ctx).client(client_id)
        ledger = await service(ctx).store.ledger(client_id)
        return _json({**found.model_dump(mode="json"), "ledger": ledger})

    @server.resource("scheduler://agents/{agent_id}", mime_type="application/json")
    async def agent_resource(agent_id: str, ctx: Ctx) -> str:
        """One agent: profile, status, group, restart count, current job."""
        return _json(service(ctx).agent(agent_id).model_dump(mode="json"))

    @server.resource("scheduler://groups/{group_id}", mime_type="application/json")
    async def group_resource(group_id: str, ctx: Ctx) -> str:
        """One supervision group with its restart log."""
        return _json(service(ctx).group(group_id).model_dump(mode="json"))

    @server.resource("scheduler://jobs/{job_id}", mime_type="application/json")
    async def job_resource(job_id: str, ctx: Ctx) -> str:
        """One job."""
        return _json((await service(ctx).job(job_id)).model_dump(mode="json"))

    @server.resource("scheduler://jobs/{job_id}/steps", mime_type="application/json")
    async def steps_resource(job_id: str, ctx: Ctx) -> str:
        """The job's memoized steps."""
        await service(ctx).job(job_id)
        return _json({"steps": await service(ctx).store.steps(job_id)})

    @server.resource("scheduler://jobs/{job_id}/transitions", mime_type="application/json")
    async def transitions_resource(job_id: str, ctx: Ctx) -> str:
        """The job's append-only transition log (creation row first)."""
        await service(ctx).job(job_id)
        return _json({"transitions": await service(ctx).store.transitions(job_id)})

    @server.resource("scheduler://evaluations/{agent_id}", mime_type="application/json")
    async def evaluations_resource(agent_id: str, ctx: Ctx) -> str:
        """The agent's latest evaluations and reputation."""
        reputation = service(ctx).reputation(agent_id)
        evaluations = await service(ctx).store.evaluations(agent_id, 100)
        return _json({"reputation": reputation, "evaluations": evaluations})

    @server.resource("scheduler://pipelines/{pipeline_id}", mime_type="application/json")
    async def pipeline_resource(pipeline_id: str, ctx: Ctx) -> str:
        """One pipeline with its stages and status."""
        return _json(_state(ctx).pipelines.get(pipeline_id))

    @server.resource("scheduler://pipelines/{pipeline_id}/events", mime_type="application/json")
    async def pipeline_events_resource(pipeline_id: str, ctx: Ctx) -> str:
        """The pipeline's first 1,000 events of every type, in sequence order."""
        pipelines = _state(ctx).pipelines
        pipelines.get(pipeline_id)
        limit = pipelines.service.limits.read_events_limit_max
        return _json({"events": await pipelines.store.events(pipeline_id, None, -1, limit)})


def _ordered(tasks: list[DagTask], jobs: list[Job]) -> list[DagTask]:
    """The DAG tasks in the order the service created their jobs (dependencies first)."""
    by_key = {task.key: task for task in tasks}
    placed: list[DagTask] = []
    done: set[str] = set()

    def place(key: str) -> None:
        if key in done:
            return
        for dep in by_key[key].depends_on:
            place(dep)
        done.add(key)
        placed.append(by_key[key])

    for task in tasks:
        place(task.key)
    assert len(placed) == len(jobs), (len(placed), len(jobs))
    return placed
