"""The MCP surface of the inference server: tools, resources, error mapping only.

Agent tools: ``chat``, ``generate``, ``embed``, ``list_models``, ``loaded_models``, ``inventory``,
``usage``. Operator tools (``load_model``, ``unload_model``, ``pin_model``, ``pull_model``) carry
``_meta["io.aios/audience"] = "operator"`` and refuse a caller whose request names an agent or
client principal (``_meta["io.aios/principal"] = {"kind": ..., "id": ...}``); a direct caller
holding the server's bearer token (the host, an operator) is trusted as the operator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Final

import anyio
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from aios_inference import catalog
from aios_inference.config import InferenceSettings
from aios_inference.models import (
    ChatMessage,
    ChatResult,
    EmbedResult,
    InventoryView,
    LoadedModelView,
    ModelList,
    OperationResult,
    PullResult,
    Tier,
    UsagePage,
)
from aios_inference.service import Caller, InferenceService, Request
from aios_shared.errors import PermissionDenied, mapped_tool_errors

__all__ = ["AppContext", "build_server"]

PRINCIPAL_META_KEY: Final = "io.aios/principal"
OPERATOR_META: Final = {"io.aios/audience": "operator"}
AGENT_META: Final = {"io.aios/audience": "agent"}

ModelName = Annotated[str, Field(min_length=1, max_length=128, description="Registry name.")]
Tag = Annotated[str, Field(min_length=1, max_length=128)]
Options = Annotated[
    dict[str, Any] | None,
    Field(description="max_tokens, temperature, top_p, top_k, seed, stop."),
]
Schema = Annotated[dict[str, Any] | None, Field(description="JSON Schema the output must match.")]
Fallbacks = Annotated[
    list[Tag] | None, Field(max_length=8, description="Models to try next, in order.")
]


@dataclass(frozen=True)
class AppContext:
    service: InferenceService


@dataclass
class _Running:
    """The service of the running lifespan, for static resources (they get no Context)."""

    service: InferenceService | None = None

    def get(self) -> InferenceService:
        assert self.service is not None, "resource read outside the lifespan"
        return self.service


def _service(ctx: Context) -> InferenceService:
    state = ctx.request_context.lifespan_context
    assert isinstance(state, AppContext), type(state)
    return state.service


def _principal(ctx: Context) -> dict[str, Any] | None:
    meta = ctx.request_context.meta
    principal = meta.get(PRINCIPAL_META_KEY) if meta else None
    return principal if isinstance(principal, dict) else None


def _caller(
    ctx: Context,
    agent_id: str | None,
    job_id: str | None,
    tier: Tier | None,
    fairness_key: str | None,
) -> Caller:
    principal = _principal(ctx) or {}
    identity = principal.get("id")
    kind = principal.get("kind")
    return Caller(
        caller=f"{kind}:{identity}" if kind and identity else "local",
        agent_id=agent_id or (identity if kind == "agent" else None),
        job_id=job_id,
        tier=tier or "marketplace",
        fairness_key=fairness_key,
    )


async def _operator(ctx: Context, action: str, subject: str) -> str:
    """The acting operator's name; a refusal (audited) for an agent or client principal."""
    principal = _principal(ctx)
    kind = principal.get("kind") if principal else None
    actor = f"{kind}:{principal.get('id')}" if principal else "operator"
    if kind not in (None, "operator", "peer"):
        await _service(ctx).store.audit(actor, action, subject, "permission_denied", {})
        raise PermissionDenied(
            f"This tool is for operators; the caller is a {kind}.",
            details={"reason": "operator_only"},
        )
    return actor


def build_server(settings: InferenceSettings) -> MCPServer[AppContext]:
    running = _Running()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppContext]) -> AsyncIterator[AppContext]:
        async with InferenceService.open(settings) as service, anyio.create_task_group() as tg:
            if settings.idle_unload_s is not None:
                tg.start_soon(_evict_idle, service, settings.idle_unload_s)
            running.service = service
            try:
                yield AppContext(service=service)
            finally:
                running.service = None
                tg.cancel_scope.cancel()

    server = MCPServer[AppContext](
        "aios-inference",
        instructions="Model runtime: chat, generate and embed with metered usage; "
        "operators load, unload, pin and pull models.",
        lifespan=lifespan,
    )
    _register_agent_tools(server)
    _register_operator_tools(server)
    _register_resources(server, running)
    return server


async def _evict_idle(service: InferenceService, idle_s: float) -> None:
    while True:
        await anyio.sleep(service.limits.idle_check_s)
        await service.residency.evict_idle(idle_s)


async def _relay(ctx: Context, request: Request, caller: Caller) -> ChatResult:
    counter = 0

    async def on_text(text: str) -> None:
        nonlocal counter
        counter += 1
        await ctx.report_progress(counter, None, text)

    return await _service(ctx).generate(request, caller, on_text)


def _register_agent_tools(server: MCPServer[AppContext]) -> None:
    @server.tool(meta=AGENT_META)
    @mapped_tool_errors
    async def chat(
        model: ModelName,
        messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=512)],
        ctx: Context,
        options: Options = None,
        json_schema: Schema = None,
        tools: Annotated[list[dict[str, Any]] | None, Field(max_length=64)] = None,
        fallbacks: Fallbacks = None,
        agent_id: Tag | None = None,
        job_id: Tag | None = None,
        tier: Tier | None = None,
        fairness_key: Tag | None = None,
    ) -> ChatResult:
        """Chat with a model. Text streams as progress notifications (message = the next chunk,
        in order) when the request has a progress token; the result has the whole text, the
        usage (tokens, milliseconds, cost) and the models tried. With json_schema the output is
        JSON matching it (parsed in `parsed`). Errors: not_found (unknown model),
        invalid_argument (prompt too large, bad options), resource_exhausted (queue full,
        overloaded), rate_limited (waited too long), subsystem_unavailable (backend down)."""
        request = Request(
            model=model,
            messages=messages,
            options=options or {},
            json_schema=json_schema,
            tools=tools,
            fallbacks=fallbacks or [],
        )
        return await _relay(ctx, request, _caller(ctx, agent_id, job_id, tier, fairness_key))

    @server.tool(meta=AGENT_META)
    @mapped_tool_errors
    async def generate(
        model: ModelName,
        prompt: Annotated[str, Field(max_length=1_000_000)],
        ctx: Context,
        options: Options = None,
        json_schema: Schema = None,
        fallbacks: Fallbacks = None,
        agent_id: Tag | None = None,
        job_id: Tag | None = None,
        tier: Tier | None = None,
        fairness_key: Tag | None = None,
    ) -> ChatResult:
        """Complete a raw prompt (no chat template). Streaming, usage and errors as in chat."""
        request = Request(
            model=model,
            prompt=prompt,
            options=options or {},
            json_schema=json_schema,
            fallbacks=fallbacks or [],
        )
        return await _relay(ctx, request, _caller(ctx, agent_id, job_id, tier, fairness_key))

    @server.tool(meta=AGENT_META)
    @mapped_tool_errors
    async def embed(
        model: ModelName,
        inputs: Annotated[list[str], Field(min_length=1, max_length=256)],
        ctx: Context,
        agent_id: Tag | None = None,
        job_id: Tag | None = None,
        tier: Tier | None = None,
    ) -> EmbedResult:
        """Embed texts: one vector per input, in order, with the usage. For semantic search."""
        caller = _caller(ctx, agent_id, job_id, tier, None)
        return await _service(ctx).embed(model, inputs, caller)

    @server.tool(meta=AGENT_META)
    @mapped_tool_errors
    async def list_models(ctx: Context) -> ModelList:
        """Models callers may name: the registry (context size, prices, placement, limits) and
        whatever each backend lists; backends that did not answer are named."""
        return await catalog.list_models(_service(ctx))

    @server.tool(meta=AGENT_META)
    @mapped_tool_errors
    async def loaded_models(ctx: Context) -> list[LoadedModelView]:
        """Models resident right now on each backend: size, GPU share, expiry, pin, load."""
        loaded, _ = await catalog.list_loaded(_service(ctx))
        return loaded

    @server.tool(meta=AGENT_META)
    @mapped_tool_errors
    async def inventory(ctx: Context) -> InventoryView:
        """Devices (GPUs through NVML when local) and resident models with their memory."""
        return await catalog.inventory(_service(ctx))

    @server.tool(meta=AGENT_META)
    @mapped_tool_errors
    async def usage(
        ctx: Context,
        caller: Tag | None = None,
        agent_id: Tag | None = None,
        job_id: Tag | None = None,
        model: Tag | None = None,
        backend: Tag | None = None,
        cursor: Annotated[int | None, Field(ge=0)] = None,
        limit: Annotated[int | None, Field(ge=1)] = None,
    ) -> UsagePage:
        """Usage records (oldest first, a page at a time via next_cursor) and totals over all
        matches, filtered by caller, agent, job, model or backend."""
        filters = {
            "caller": caller,
            "agent_id": agent_id,
            "job_id": job_id,
            "model": model,
            "backend": backend,
        }
        return await catalog.query_usage(_service(ctx), filters, cursor, limit)


def _register_operator_tools(server: MCPServer[AppContext]) -> None:
    @server.tool(meta=OPERATOR_META)
    @mapped_tool_errors
    async def load_model(
        model: ModelName,
        ctx: Context,
        backend: Tag | None = None,
        keep_alive: Annotated[str | None, Field(max_length=32)] = None,
    ) -> OperationResult:
        """Operator: make a model resident (admission first: refused if it does not fit after
        evicting idle unpinned models). keep_alive like '10m'."""
        actor = await _operator(ctx, "model.load", model)
        return await catalog.load_model(_service(ctx), model, backend, keep_alive, actor)

    @server.tool(meta=OPERATOR_META)
    @mapped_tool_errors
    async def unload_model(
        model: ModelName, ctx: Context, backend: Tag | None = None
    ) -> OperationResult:
        """Operator: unload a model now (and drop its pin)."""
        actor = await _operator(ctx, "model.unload", model)
        return await catalog.unload_model(_service(ctx), model, backend, actor)

    @server.tool(meta=OPERATOR_META)
    @mapped_tool_errors
    async def pin_model(
        model: ModelName, ctx: Context, pinned: bool = True, backend: Tag | None = None
    ) -> OperationResult:
        """Operator: pin a model resident (never evicted, no expiry) or unpin it."""
        actor = await _operator(ctx, "model.pin", model)
        return await catalog.pin_model(_service(ctx), model, backend, pinned, actor)

    @server.tool(meta=OPERATOR_META)
    @mapped_tool_errors
    async def pull_model(
        model: Annotated[str, Field(min_length=1, max_length=512)],
        ctx: Context,
        backend: Tag | None = None,
        insecure: bool = False,
    ) -> PullResult:
        """Operator: pull a model onto an Ollama backend; progress notifications carry the
        status and bytes."""
        actor = await _operator(ctx, "model.pull", model)

        async def on_event(count: int, total: int | None, message: str) -> None:
            await ctx.report_progress(count, None, message)

        return await catalog.pull_model(_service(ctx), model, backend, insecure, on_event, actor)


def _register_resources(server: MCPServer[AppContext], running: _Running) -> None:
    @server.resource("inference://models", mime_type="application/json")
    async def models_resource() -> str:
        """The model list (as list_models)."""
        return (await catalog.list_models(running.get())).model_dump_json()

    @server.resource("inference://inventory", mime_type="application/json")
    async def inventory_resource() -> str:
        """Devices and resident models (as inventory)."""
        return (await catalog.inventory(running.get())).model_dump_json()

    @server.resource("inference://usage/agent/{agent_id}", mime_type="application/json")
    async def agent_usage_resource(agent_id: str, ctx: Context) -> str:
        """An agent's usage: the first page of records and the totals."""
        page = await catalog.query_usage(_service(ctx), {"agent_id": agent_id}, None, None)
        return page.model_dump_json()

    @server.resource("inference://usage/job/{job_id}", mime_type="application/json")
    async def job_usage_resource(job_id: str, ctx: Context) -> str:
        """A job's usage: the first page of records and the totals."""
        page = await catalog.query_usage(_service(ctx), {"job_id": job_id}, None, None)
        return page.model_dump_json()
