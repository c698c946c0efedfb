"""The MCP surface of the memory server (spec/memory.md section 5): tools, ``memory://``
resources, subscriptions and the ``primer`` prompt. Parsing, calling the service, mapping errors
and shaping results only; the rules live in ``service.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.session import ServerSession
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ToolAnnotations
from pydantic import Field

from aios_memory.clocks import Reason
from aios_memory.config import MemorySettings
from aios_memory.importer import export_jsonl, import_jsonl
from aios_memory.models import (
    ConflictsResult,
    DeleteResult,
    EvolveResult,
    ExportResult,
    GetManyResult,
    HistoryResult,
    ImportResult,
    LineageResult,
    LinkResult,
    LinkSpec,
    ListResult,
    MemoryRecord,
    MergeResult,
    NeighborsResult,
    PathResult,
    ReindexResult,
    ResolveResult,
    RestoreResult,
    SaveItem,
    SaveManyResult,
    SaveResult,
    SearchResult,
    StatsResult,
    Tier,
    TypesResult,
    UnlinkResult,
    UpdateResult,
)
from aios_memory.service import Clock, IdGenerator, MemoryService
from aios_memory.store import Direction, MemoryStore
from aios_memory.store_factory import make_store
from aios_shared.errors import ToolFailed, mapped_tool_errors
from aios_shared.peers import PeerAddress, PeerPool
from aios_shared.runner import install_middleware, lowlevel

__all__ = ["AppState", "build_server"]

logger = logging.getLogger(__name__)

_READ_ONLY = ToolAnnotations(read_only_hint=True)
_IDEMPOTENT = ToolAnnotations(idempotent_hint=True)
_NOTIFY_QUEUE_MAX = 1_000


@dataclass
class AppState:
    """What the tools reach through the lifespan context."""

    service: MemoryService
    subscribers: dict[str, set[ServerSession]] = field(default_factory=dict)
    updates: anyio.abc.ObjectSendStream[str] | None = None


def _service(ctx: Context) -> MemoryService:
    state = cast(AppState, ctx.request_context.lifespan_context)
    return state.service


def build_server(
    settings: MemorySettings,
    *,
    store: MemoryStore | None = None,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    embed: Callable[[str], Awaitable[list[float]]] | None = None,
    peers: Mapping[str, PeerAddress] | None = None,
) -> MCPServer[AppState]:
    """The memory MCP server. ``store``, ``clock`` and ``ids`` are injectable for tests;
    ``peers`` (from ``AIOS_PEERS``) reach the inference server for embeddings."""

    # Static resources get no Context in the SDK; they reach the running service through this
    # per-server cell, set while the lifespan runs.
    running: list[MemoryService] = []

    @asynccontextmanager
    async def lifespan(server: MCPServer[AppState]) -> AsyncIterator[AppState]:
        backend = store or make_store(settings)
        async with (
            PeerPool.open(peers or {}) as pool,
            MemoryService.open(
                settings, backend, clock=clock, ids=ids, embed=embed or _embedder(pool)
            ) as service,
        ):
            send, receive = anyio.create_memory_object_stream[str](_NOTIFY_QUEUE_MAX)
            state = AppState(service=service, updates=send)

            def on_change(uri: str) -> None:
                try:
                    send.send_nowait(uri)
                except anyio.WouldBlock:
                    logger.warning("subscription.dropped", extra={"uri": uri})

            service.subscribe(on_change)
            running.append(service)
            try:
                async with send, anyio.create_task_group() as group:
                    await group.start(service.run_sweepers)
                    group.start_soon(_deliver_updates, server, state, receive)
                    yield state
                    group.cancel_scope.cancel()
            finally:
                running.remove(service)

    server: MCPServer[AppState] = MCPServer(
        "aios-memory",
        version="0.1.0",
        instructions="Typed, versioned memory graph: save, search, link and traverse memories. "
        "Get the primer prompt to learn how to use it.",
        lifespan=lifespan,
    )
    _register_write_tools(server)
    _register_read_tools(server)
    _register_graph_tools(server)
    _register_resources(server, running)
    _register_subscriptions(server)
    install_middleware(lowlevel(server), None)
    return server


def _embedder(pool: PeerPool) -> Callable[[str], Awaitable[list[float]]]:
    """Embeddings from the inference peer; without one, ``PeerPool`` answers
    ``subsystem_unavailable`` at once."""

    async def embed(text: str) -> list[float]:
        result = await pool.call("inference", "embed", {"texts": [text]})
        vectors = result.get("vectors")
        if not isinstance(vectors, list) or not vectors or not isinstance(vectors[0], list):
            raise ToolFailed("The inference server's embed result has no vectors.")
        return [float(value) for value in vectors[0]]

    return embed


async def _deliver_updates(
    server: MCPServer[AppState], state: AppState, receive: anyio.abc.ObjectReceiveStream[str]
) -> None:
    """Send ``resources/updated`` to subscribers (legacy sessions and listen streams)."""
    bus = server._subscriptions  # pyright: ignore[reportPrivateUsage]  # no public accessor
    async with receive:
        async for uri in receive:
            await bus.publish(ResourceUpdated(uri=uri))
            for session in list(state.subscribers.get(uri, ())):
                try:
                    await session.send_resource_updated(uri)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    state.subscribers[uri].discard(session)


def _register_subscriptions(server: MCPServer[AppState]) -> None:
    inner = lowlevel(server)

    async def subscribe(
        ctx: ServerRequestContext[AppState], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        ctx.lifespan_context.subscribers.setdefault(str(params.uri), set()).add(ctx.session)
        return types.EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[AppState], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        ctx.lifespan_context.subscribers.get(str(params.uri), set()).discard(ctx.session)
        return types.EmptyResult()

    inner.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    inner.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)


def _register_write_tools(server: MCPServer[AppState]) -> None:
    @server.tool()
    @mapped_tool_errors
    async def save(
        ctx: Context,
        type: str,
        data: dict[str, Any],
        text: str | None = None,
        summary: str | None = None,
        tags: list[str] | None = None,
        namespace: str = "global",
        tier: Tier = "persistent",
        ttl_s: int | None = None,
        on_evict: Literal["drop", "promote"] = "drop",
        id: str | None = None,
        reason: Reason = "observation",
        dedupe: bool = True,
        idempotency_key: str | None = Field(None, min_length=1, max_length=200),
        links: list[LinkSpec] | None = None,
        actor: str | None = None,
    ) -> SaveResult:
        """Save one typed memory. `type` is one of the 24 types (call `types` for schemas);
        `data` is validated strictly. Equal content in the same namespace is deduplicated
        (`dedupe`). Working-tier memories expire after `ttl_s` (default 3600 s). Fails with
        invalid_argument (unknown_type, schema_violation, content_too_large, invalid_tag, ...)."""
        item = SaveItem(
            type=type,
            data=data,
            text=text,
            summary=summary,
            tags=tags,
            namespace=namespace,
            tier=tier,
            ttl_s=ttl_s,
            on_evict=on_evict,
            id=id,
            reason=reason,
            dedupe=dedupe,
            idempotency_key=idempotency_key,
            links=links,
            actor=actor,
        )
        return await _service(ctx).save(item)

    @server.tool()
    @mapped_tool_errors
    async def save_many(ctx: Context, items: list[SaveItem]) -> SaveManyResult:
        """Save up to 500 memories atomically: all or nothing. An invalid item fails the batch
        with its index in details.index."""
        return await _service(ctx).save_many(items)

    @server.tool()
    @mapped_tool_errors
    async def update(
        ctx: Context,
        id: str,
        data: dict[str, Any] | None = None,
        data_patch: dict[str, Any] | None = None,
        text: str | None = None,
        summary: str | None = None,
        tags: list[str] | None = None,
        reason: Reason = "observation",
        expected_version: int | None = None,
        base_version: int | None = None,
        ttl_s: int | None = None,
        actor: str | None = None,
    ) -> UpdateResult:
        """Append a version to a memory (`data` replaces, `data_patch` merges per RFC 7386).
        An unchanged payload writes nothing (changed false). `expected_version` fails with
        conflict/version_mismatch unless it is the current version; a write from an old
        `base_version` that misses another head keeps both heads (conflicted) or, under the
        reject policy, fails with conflict/concurrent_write."""
        return await _service(ctx).update(
            id,
            data=data,
            data_patch=data_patch,
            text=text,
            summary=summary,
            tags=tags,
            reason=reason,
            expected_version=expected_version,
            base_version=base_version,
            ttl_s=ttl_s,
            actor=actor,
        )

    @server.tool()
    @mapped_tool_errors
    async def evolve(
        ctx: Context,
        id: str,
        reason: Reason,
        data: dict[str, Any] | None = None,
        data_patch: dict[str, Any] | None = None,
        type: str | None = None,
        summary: str | None = None,
        tags: list[str] | None = None,
        actor: str | None = None,
    ) -> EvolveResult:
        """Create a successor memory linked by evolved_into; the original stays unchanged."""
        return await _service(ctx).evolve(
            id,
            reason=reason,
            data=data,
            data_patch=data_patch,
            type_name=type,
            summary=summary,
            tags=tags,
            actor=actor,
        )

    @server.tool()
    @mapped_tool_errors
    async def merge(
        ctx: Context,
        ids: list[str],
        data: dict[str, Any],
        type: str | None = None,
        reason: Reason = "correction",
        summary: str | None = None,
        tags: list[str] | None = None,
        namespace: str | None = None,
        actor: str | None = None,
    ) -> MergeResult:
        """Merge 2..16 memories into a new one derived_from each (type required if they
        differ)."""
        return await _service(ctx).merge(
            ids,
            data=data,
            type_name=type,
            reason=reason,
            summary=summary,
            tags=tags,
            namespace=namespace,
            actor=actor,
        )

    @server.tool()
    @mapped_tool_errors
    async def resolve(
        ctx: Context,
        id: str,
        data: dict[str, Any] | None = None,
        keep_version: int | None = None,
        reason: Reason = "correction",
        actor: str | None = None,
    ) -> ResolveResult:
        """Resolve a conflicted memory: one new version after all heads, with `data` or the
        payload of `keep_version`. Fails with conflict/not_conflicted on a single head."""
        return await _service(ctx).resolve(
            id, data=data, keep_version=keep_version, reason=reason, actor=actor
        )

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
    @mapped_tool_errors
    async def delete(ctx: Context, id: str, purge: bool = False) -> DeleteResult:
        """Tombstone a memory (restorable, still in history and lineage). `purge` also removes
        its unreferenced content and its full-text entry for good."""
        return await _service(ctx).delete(id, purge=purge)

    @server.tool()
    @mapped_tool_errors
    async def restore(ctx: Context, id: str) -> RestoreResult:
        """Bring back a deleted (not purged) memory with a new version."""
        return await _service(ctx).restore(id)

    @server.tool()
    @mapped_tool_errors
    async def promote(ctx: Context, id: str, ttl_s: int | None = None) -> MemoryRecord:
        """Move a working memory, with its versions and clock, to the persistent tier."""
        return await _service(ctx).promote(id, ttl_s=ttl_s)

    @server.tool(annotations=_IDEMPOTENT)
    @mapped_tool_errors
    async def link(
        ctx: Context,
        from_id: str,
        to_id: str,
        relation: str,
        weight: float = Field(1.0, ge=0.0, le=1.0),
        metadata: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> LinkResult:
        """Link two persistent memories with one of 13 relations (evolved_into, derived_from,
        supersedes, contradicts, supports, references, part_of, triggers, blocked_by,
        related_to, resolves, depends_on, implements); inverse names such as evolved_from
        or referenced_by are flipped. Linking again updates the edge (created false)."""
        return await _service(ctx).link(
            from_id, to_id, relation, weight=weight, metadata=metadata, actor=actor
        )

    @server.tool(annotations=_IDEMPOTENT)
    @mapped_tool_errors
    async def unlink(
        ctx: Context, from_id: str, to_id: str, relation: str | None = None
    ) -> UnlinkResult:
        """Remove the edge of one relation between two memories (all relations if omitted)."""
        return await _service(ctx).unlink(from_id, to_id, relation)

    @server.tool()
    @mapped_tool_errors
    async def reindex(
        ctx: Context, target: Literal["fulltext", "embeddings"] = "fulltext"
    ) -> ReindexResult:
        """Rebuild the full-text index (embeddings need the inference server)."""

        async def progress(done: float, total: float, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await _service(ctx).reindex(target, progress)

    @server.tool(name="import")
    @mapped_tool_errors
    async def import_records(
        ctx: Context,
        jsonl: str = Field(max_length=16 * 1024 * 1024),
        format: Literal["mcp_memory", "contextfs"] = "mcp_memory",
        namespace: str = "global",
    ) -> ImportResult:
        """Import JSON lines from the reference MCP memory server (entities with observations
        and relations) or ContextFS-style memory records. Atomic: nothing is written unless
        every line is valid."""
        return await import_jsonl(_service(ctx), jsonl, format, namespace)


def _register_read_tools(server: MCPServer[AppState]) -> None:
    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def get(
        ctx: Context, id: str, version: int | None = None, include_deleted: bool = False
    ) -> MemoryRecord:
        """Read one memory by exact id (or its view at `version`). Fails with not_found
        (missing, deleted, expired, version_missing) or invalid_argument/invalid_id."""
        return await _service(ctx).get(id, version=version, include_deleted=include_deleted)

    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def get_many(ctx: Context, ids: list[str], include_edges: bool = False) -> GetManyResult:
        """Read up to 100 memories; absent ones are listed in `missing`."""
        return await _service(ctx).get_many(ids, include_edges=include_edges)

    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def search(
        ctx: Context,
        query: str,
        mode: Literal["fulltext", "semantic", "hybrid"] = "fulltext",
        match: Literal["all", "any"] = "all",
        types: list[str] | None = None,
        namespace: str | None = None,
        tags: list[str] | None = None,
        tier: Literal["all", "working", "persistent"] = "all",
        created_after: str | None = None,
        updated_after: str | None = None,
        include_deleted: bool = False,
        limit: int = 10,
        offset: int = 0,
    ) -> SearchResult:
        """Ranked full-text search (words, not query syntax; at most 1000 characters). Scores
        are relative to the best hit. semantic/hybrid need the inference server."""
        return await _service(ctx).search(
            query,
            mode=mode,
            match=match,
            types=types,
            namespace=namespace,
            tags=tags,
            tier=tier,
            created_after=created_after,
            updated_after=updated_after,
            include_deleted=include_deleted,
            limit=limit,
            offset=offset,
        )

    @server.tool(name="list", annotations=_READ_ONLY)
    @mapped_tool_errors
    async def list_memories(
        ctx: Context,
        types: list[str] | None = None,
        namespace: str | None = None,
        tags: list[str] | None = None,
        tier: Literal["all", "working", "persistent"] = "all",
        order: Literal["updated_desc", "updated_asc", "created_desc", "created_asc"] = (
            "updated_desc"
        ),
        limit: int = 20,
        cursor: str | None = None,
    ) -> ListResult:
        """A page of memories without their data; pass next_cursor to continue."""
        return await _service(ctx).list_records(
            types=types,
            namespace=namespace,
            tags=tags,
            tier=tier,
            order=order,
            limit=limit,
            cursor=cursor,
        )

    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def history(ctx: Context, id: str, limit: int = 100) -> HistoryResult:
        """The versions of a memory, newest first, with reasons, actors and vector clocks."""
        return await _service(ctx).history(id, limit=limit)

    @server.tool(name="types", annotations=_READ_ONLY)
    @mapped_tool_errors
    async def list_types(ctx: Context, type: str | None = None) -> TypesResult:
        """The 24 memory types with JSON Schema, an example and the default TTL."""
        return _service(ctx).types(type)

    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def stats(ctx: Context, namespace: str | None = None) -> StatsResult:
        """Counts by tier, type, namespace and tag; backend; working budget use."""
        return await _service(ctx).stats(namespace)

    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def conflicts(
        ctx: Context, namespace: str | None = None, id: str | None = None, limit: int = 50
    ) -> ConflictsResult:
        """Memories with concurrent heads (resolve them) and contradicts edges."""
        return await _service(ctx).conflicts(namespace=namespace, memory_id=id, limit=limit)

    @server.tool(name="export", annotations=_READ_ONLY)
    @mapped_tool_errors
    async def export_records(
        ctx: Context, namespace: str | None = None, cursor: str | None = None, limit: int = 500
    ) -> ExportResult:
        """Export persistent memories and their edges as JSON lines, a page at a time."""
        return await export_jsonl(_service(ctx), namespace, cursor, limit)


def _register_graph_tools(server: MCPServer[AppState]) -> None:
    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def neighbors(
        ctx: Context,
        id: str,
        depth: int = 1,
        direction: Direction = "both",
        relations: list[str] | None = None,
        include_deleted: bool = False,
        nodes_max: int = 200,
    ) -> NeighborsResult:
        """Breadth-first neighbourhood up to `depth` (0..6) hops, each node once at its
        shortest distance, in (depth, id) order, with the edges among them."""
        return await _service(ctx).neighbors(
            id,
            depth=depth,
            direction=direction,
            relations=relations,
            include_deleted=include_deleted,
            nodes_max=nodes_max,
        )

    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def path(
        ctx: Context,
        from_id: str,
        to_id: str,
        depth_max: int = 4,
        direction: Direction = "out",
        relations: list[str] | None = None,
    ) -> PathResult:
        """A shortest path (ties broken by id order) within depth_max (1..6) hops."""
        return await _service(ctx).path(
            from_id, to_id, depth_max=depth_max, direction=direction, relations=relations
        )

    @server.tool(annotations=_READ_ONLY)
    @mapped_tool_errors
    async def lineage(
        ctx: Context,
        id: str,
        direction: Literal["ancestors", "descendants", "both"] = "ancestors",
        depth_max: int = 10,
    ) -> LineageResult:
        """Where a memory came from (ancestors) or what it became (descendants) through
        evolve and merge, deleted ones included and flagged."""
        return await _service(ctx).lineage(id, direction=direction, depth_max=depth_max)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _register_resources(server: MCPServer[AppState], running: list[MemoryService]) -> None:
    def current() -> MemoryService:
        assert running, "resources are read only while the server runs"
        return running[-1]

    @server.resource("memory://types", mime_type="application/json")
    async def types_resource() -> str:
        """The 24 memory types and their JSON Schemas."""
        return current().types().model_dump_json()

    @server.resource("memory://types/{type}", mime_type="application/json")
    async def type_resource(type: str, ctx: Context) -> str:
        """One memory type's JSON Schema and example."""
        return _service(ctx).types(type).types[0].model_dump_json()

    @server.resource("memory://m/{id}", mime_type="application/json")
    async def memory_resource(id: str, ctx: Context) -> str:
        """One memory record (subscribable)."""
        return (await _service(ctx).get(id)).model_dump_json()

    @server.resource("memory://m/{id}/v/{version}", mime_type="application/json")
    async def version_resource(id: str, version: int, ctx: Context) -> str:
        """A memory at one version."""
        return (await _service(ctx).get(id, version=version)).model_dump_json()

    @server.resource("memory://m/{id}/history", mime_type="application/json")
    async def history_resource(id: str, ctx: Context) -> str:
        """A memory's versions, newest first."""
        return (await _service(ctx).history(id)).model_dump_json()

    @server.resource("memory://m/{id}/neighbors{?depth,direction}", mime_type="application/json")
    async def neighbors_resource(
        id: str, ctx: Context, depth: int = 1, direction: Direction = "both"
    ) -> str:
        """A memory's neighbourhood."""
        result = await _service(ctx).neighbors(id, depth=depth, direction=direction)
        return result.model_dump_json()

    @server.resource("memory://conflicts", mime_type="application/json")
    async def conflicts_resource() -> str:
        """Conflicted memories and contradictions (subscribable)."""
        return (await current().conflicts()).model_dump_json()

    @server.resource("memory://stats", mime_type="application/json")
    async def stats_resource() -> str:
        """Counts and budget use."""
        return (await current().stats()).model_dump_json()

    @server.resource("memory://state/digest", mime_type="application/json")
    async def digest_resource() -> str:
        """SHA-256 over the canonical dump of durable state (records, versions, live edges)."""
        return _json({"digest": await current().digest()})

    @server.prompt()
    async def primer(
        ctx: Context, namespace: str = "global", topic: str | None = None, limit: int = 10
    ) -> list[Message]:
        """A system-prompt section: what this agent already knows (facts, decisions,
        procedures) and how to use the memory tools."""
        return [UserMessage(await build_primer(_service(ctx), namespace, topic, limit))]


async def build_primer(
    service: MemoryService, namespace: str, topic: str | None, limit: int
) -> str:
    """The primer text (spec 5): relevant memories, then how to call save and search."""
    limit = max(1, min(limit, 50))
    kinds = ["fact", "decision", "procedural"]
    if topic:
        hits = (
            await service.search(topic, types=kinds, namespace=namespace, limit=limit, match="any")
        ).hits
        lines = [
            f"- [{hit.type}] {hit.snippet.splitlines()[0] if hit.snippet else hit.id} (id {hit.id})"
            for hit in hits
        ]
    else:
        page = await service.list_records(types=kinds, namespace=namespace, limit=limit)
        records = (await service.get_many([r.id for r in page.records])).records
        lines = [f"- [{r.type}] {_headline(r.data or {})} (id {r.id})" for r in records]
    known = "\n".join(lines) or "- (nothing yet)"
    return (
        "## Memory\n"
        f"You have a persistent, typed memory (namespace {namespace!r}). What you know so far:\n"
        f"{known}\n\n"
        "Use it: call memory_search with a few words before answering questions about past "
        "work; call memory_save with a type (fact, decision, procedural, episodic, todo, ... "
        "see memory_types) and its data whenever you learn something worth keeping; link "
        "related memories with memory_link (supports, contradicts, references, ...)."
    )


def _headline(data: dict[str, Any]) -> str:
    for key in ("assertion", "decision", "name", "title", "event", "message"):
        if isinstance(data.get(key), str):
            return str(data[key])
    return _json(data)[:120]
