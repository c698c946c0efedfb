"""The memory service: validation, hashing, clocks, policies, tiers and graph rules on top of a
backend (spec/memory.md). Imports neither mcp nor starlette; tests and benchmarks call it directly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeVar, cast

import anyio

from aios_memory import clocks
from aios_memory.canonical import canonical_bytes
from aios_memory.clocks import Reason
from aios_memory.config import MemorySettings
from aios_memory.errors import conflict, invalid, missing
from aios_memory.models import (
    ConflictsResult,
    Contradiction,
    DeleteResult,
    Edge,
    EvolveResult,
    GetManyResult,
    HistoryResult,
    LineageEntry,
    LineageResult,
    LinkResult,
    ListResult,
    MemoryRecord,
    MemorySummary,
    MergeResult,
    NeighborNode,
    NeighborsResult,
    PathResult,
    ReindexResult,
    ResolveResult,
    RestoreResult,
    SaveItem,
    SaveManyResult,
    SaveResult,
    SearchHit,
    SearchResult,
    Sibling,
    StatsResult,
    Tier,
    TypeDescription,
    TypesResult,
    UnlinkResult,
    UpdateResult,
    VersionEntry,
)
from aios_memory.schemas import TYPES, format_time, parse_time
from aios_memory.search import reciprocal_rank_fusion, term_frequency_score, tokenize
from aios_memory.store import (
    RELATIONS,
    SYMMETRIC,
    Content,
    Direction,
    Filters,
    ListOrder,
    MemoryStore,
    StoredEdge,
    StoredMemory,
    StoredVersion,
    StoreTx,
    indexed_text,
)
from aios_memory.traversal import shortest_path
from aios_memory.validation import (
    Payload,
    build_payload,
    check_actor,
    check_id,
    check_namespace,
    check_relations,
    check_tags,
    check_ttl,
    merge_patch,
    normalize_relation,
    payload_from_body,
    resolve_type,
)
from aios_memory.working import WorkingEntry, WorkingTier, WorkingTx
from aios_shared.errors import AiosError, SubsystemUnavailable, Timeout

__all__ = ["Clock", "IdGenerator", "MemoryService", "uuid7_generator"]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
IdGenerator = Callable[[], str]
T = TypeVar("T")

_NODE_ID_KEY: Final = "node_id"
_SWEEP_BATCH: Final = 500


def uuid7_generator() -> IdGenerator:
    """UUIDv7 ids, monotonic within the process (a 12-bit sequence inside one millisecond)."""
    last = [0, 0]

    def generate() -> str:
        millis = time.time_ns() // 1_000_000
        if millis <= last[0]:
            millis, sequence = last[0], last[1] + 1
            if sequence > 0xFFF:
                millis, sequence = millis + 1, 0
        else:
            sequence = 0
        last[0], last[1] = millis, sequence
        value = (millis & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76 | sequence << 64 | 0b10 << 62 | secrets.randbits(62)
        return str(uuid.UUID(int=value))

    return generate


@dataclass(frozen=True)
class _Located:
    memory: StoredMemory
    tier: Tier


def _to_record(memory: StoredMemory, tier: Tier) -> MemoryRecord:
    return MemoryRecord(
        id=memory.id,
        type=memory.type,
        subcategory=memory.subcategory,
        schema_version=memory.schema_version,
        namespace=memory.namespace,
        data=memory.data,
        text=memory.text,
        summary=memory.summary,
        tags=list(memory.tags),
        version=memory.version,
        heads=list(memory.heads),
        content_hash=memory.content_hash,
        vector_clock=memory.vector_clock,
        created_at=memory.created_at,
        updated_at=memory.updated_at,
        deleted_at=memory.deleted_at,
        expires_at=memory.expires_at,
        tier=tier,
        conflicted=memory.conflicted,
        purged=memory.purged,
    )


def _to_version(version: StoredVersion) -> VersionEntry:
    return VersionEntry(
        memory_id=version.memory_id,
        version=version.version,
        parents=list(version.parents),
        content_hash=version.content_hash,
        reason=version.reason,  # type: ignore[arg-type]  # stored from the Reason literal
        actor=version.actor,
        vector_clock=version.vector_clock,
        created_at=version.created_at,
        is_head=version.is_head,
    )


def _to_edge(edge: StoredEdge) -> Edge:
    return Edge(
        from_id=edge.from_id,
        to_id=edge.to_id,
        relation=edge.relation,
        weight=edge.weight,
        metadata=edge.metadata,
        created_at=edge.created_at,
        created_by=edge.created_by,
    )


def _with_payload(memory: StoredMemory, payload: Payload) -> StoredMemory:
    return replace(
        memory,
        content_hash=payload.hash,
        data=payload.data,
        text=payload.text,
        summary=payload.summary,
        tags=tuple(payload.tags),
    )


class MemoryService:
    """Everything the MCP tools do, without MCP."""

    def __init__(
        self,
        store: MemoryStore,
        settings: MemorySettings,
        *,
        node_id: str,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        embed: Callable[[str], Awaitable[list[float]]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.limits = settings.limits
        self.node_id = check_actor(node_id)
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._ids = ids or uuid7_generator()
        self._embed = embed
        self.working = WorkingTier(settings.limits)
        self.working.cache_enabled = store.backend == "sqlite" or settings.neo4j_exclusive
        self._listeners: list[Callable[[str], None]] = []

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: MemorySettings,
        store: MemoryStore,
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        embed: Callable[[str], Awaitable[list[float]]] | None = None,
    ) -> AsyncIterator[MemoryService]:
        """Initialize the backend, load (or make) the server's actor id, and close at exit."""
        try:
            await store.init_schema()
            node_id = settings.node_id or await store.meta_get(_NODE_ID_KEY)
            if node_id is None:
                node_id = str(uuid.uuid4())
                await store.meta_set(_NODE_ID_KEY, node_id)
            yield cls(store, settings, node_id=node_id, clock=clock, ids=ids, embed=embed)
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    # ---- plumbing -----------------------------------------------------------------------------

    def now(self) -> str:
        return format_time(self._clock())

    def _later(self, seconds: int) -> str:
        return format_time(self._clock() + timedelta(seconds=seconds))

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """``listener(uri)`` is called after each change (resource subscriptions)."""
        self._listeners.append(listener)

    def _changed(self, *memory_ids: str, conflicts: bool = False) -> None:
        for memory_id in memory_ids:
            self.working.invalidate(memory_id)
        uris = [f"memory://m/{memory_id}" for memory_id in memory_ids]
        if conflicts:
            uris.append("memory://conflicts")
        for listener in self._listeners:
            for uri in uris:
                listener(uri)

    async def _read(self, call: Awaitable[T]) -> T:
        """Reads run under ``query_timeout_s``."""
        try:
            with anyio.fail_after(self.limits.query_timeout_s):
                return await call
        except TimeoutError:
            raise Timeout(
                f"The query took longer than {self.limits.query_timeout_s:g} s.",
                hint="Narrow it (smaller depth, fewer nodes, a filter).",
                details={"reason": "query_timeout", "limit_s": self.limits.query_timeout_s},
            ) from None

    def _actor(self, actor: str | None) -> str:
        return self.node_id if actor is None else check_actor(actor)

    async def _locate(self, memory_id: str, *, include_deleted: bool = False) -> _Located:
        """Find a memory in either tier, applying tombstone and expiry rules.

        Raises:
            InvalidArgument: invalid_id. NotFound: missing, deleted, expired.
        """
        check_id(memory_id)
        now = self.now()
        entry = self.working.touch(memory_id)
        tier: Tier
        if entry is not None:
            memory, tier = entry.memory, "working"
        else:
            generation = self.working.writes
            cached = self.working.cache_get(memory_id)
            stored = cached or await self._read(self.store.get(memory_id))
            if stored is None:
                raise missing("missing", memory_id)
            if cached is None:
                self.working.cache_put(stored, generation)
                await self._drain_promotions()
            memory, tier = stored, "persistent"
        if not include_deleted:
            if memory.deleted_at is not None:
                raise missing("deleted", memory_id, deleted_at=memory.deleted_at)
            if memory.expires_at is not None and memory.expires_at <= now:
                raise missing("expired", memory_id, expired_at=memory.expires_at)
        return _Located(memory, tier)

    @asynccontextmanager
    async def _tx_for(self, memory_id: str) -> AsyncIterator[tuple[StoreTx, Tier]]:
        if self.working.peek(memory_id) is not None:
            yield cast(StoreTx, WorkingTx(self.working)), "working"
            await self._drain_promotions()
        else:
            async with self.store.write() as tx:
                yield tx, "persistent"

    async def _current(self, tx: StoreTx, memory_id: str, *, allow_deleted: bool) -> StoredMemory:
        memory = await tx.get(memory_id)
        if memory is None:
            raise missing("missing", memory_id)
        if memory.deleted_at is not None and not allow_deleted:
            raise missing("deleted", memory_id, deleted_at=memory.deleted_at)
        if memory.deleted_at is None and memory.expires_at is not None:
            if memory.expires_at <= self.now():
                raise missing("expired", memory_id, expired_at=memory.expires_at)
        return memory

    # ---- save ---------------------------------------------------------------------------------

    def _prepare(self, item: SaveItem) -> tuple[Payload, str | None, str]:
        """Validate one save request; returns the payload, expires_at and actor."""
        if item.id is not None:
            check_id(item.id)
        check_namespace(item.namespace)
        actor = self._actor(item.actor)
        payload = build_payload(
            item.type, item.data, item.tags, item.text, item.summary, self.limits
        )
        for link in item.links or []:
            check_id(link.to_id, "links.to_id")
            normalize_relation(link.relation, "0", "1")
            if item.tier == "working":
                raise invalid(
                    "working_tier_not_linkable",
                    "Working memories cannot carry edges.",
                    "Save it persistent, or promote it before linking.",
                )
        expires_at: str | None = None
        if item.tier == "working":
            expires_at = self._later(
                check_ttl(
                    self.limits.ttl_s_default if item.ttl_s is None else item.ttl_s, self.limits
                )
            )
        elif item.ttl_s is not None:
            expires_at = self._later(check_ttl(item.ttl_s, self.limits))
        elif payload.info.default_ttl_s is not None:
            expires_at = self._later(payload.info.default_ttl_s)
        return payload, expires_at, actor

    def _new_memory(
        self, item: SaveItem, payload: Payload, expires_at: str | None, actor: str
    ) -> tuple[StoredMemory, StoredVersion]:
        now = self.now()
        memory_id = item.id or self._ids()
        clock = {actor: 1}
        memory = StoredMemory(
            id=memory_id,
            type=payload.info.name,
            subcategory=payload.info.subcategory,
            schema_version=payload.info.schema_version,
            namespace=item.namespace,
            version=1,
            heads=(1,),
            content_hash=payload.hash,
            vector_clock=clock,
            data=payload.data,
            text=payload.text,
            summary=payload.summary,
            tags=tuple(payload.tags),
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
        )
        version = StoredVersion(
            memory_id, 1, (), payload.hash, item.reason, actor, clock, True, now
        )
        return memory, version

    async def save(self, item: SaveItem) -> SaveResult:
        """Validate and store one memory (or return the live duplicate).

        Raises:
            InvalidArgument, NotFound (a link target), Conflict (id_exists,
            idempotency_key_reused).
        """
        payload, expires_at, actor = self._prepare(item)
        request_hash = hashlib.sha256(
            canonical_bytes(item.model_dump(mode="json", exclude={"idempotency_key"}))
        ).hexdigest()
        async with self.store.write() as tx:
            if item.idempotency_key is not None:
                previous = await tx.idempotency_get(item.idempotency_key)
                if previous is not None:
                    if previous[0] != request_hash:
                        raise conflict(
                            "idempotency_key_reused",
                            f"Idempotency key {item.idempotency_key!r} was used for another "
                            "request.",
                            "Use a fresh key for a different payload.",
                        )
                    return SaveResult.model_validate_json(previous[1])
            if item.tier == "working":
                result = await self._save_working(item, payload, expires_at, actor)
            else:
                result = await self._save_persistent(tx, item, payload, expires_at, actor)
            if item.idempotency_key is not None:
                await tx.idempotency_put(
                    item.idempotency_key, request_hash, result.model_dump_json(), self.now()
                )
        if not result.deduplicated:
            self._changed(result.id)
        await self._drain_promotions()
        return result

    async def _existing_duplicate(
        self, tx: StoreTx, item: SaveItem, payload: Payload
    ) -> StoredMemory | None:
        if item.id is not None:
            existing = await tx.get(item.id)
            if existing is None and self.working.peek(item.id) is not None:
                existing = await WorkingTx(self.working).get(item.id)
            if existing is not None:
                if existing.content_hash != payload.hash or existing.namespace != item.namespace:
                    raise conflict(
                        "id_exists",
                        f"Memory {item.id} already exists with another payload.",
                        "Use update to change it, or omit id.",
                        id=item.id,
                    )
                return existing
            return None
        if not item.dedupe:
            return None
        found = await tx.find_by_hash(item.namespace, payload.info.name, payload.hash, self.now())
        return None if found is None else await tx.get(found)

    async def _save_persistent(
        self,
        tx: StoreTx,
        item: SaveItem,
        payload: Payload,
        expires_at: str | None,
        actor: str,
    ) -> SaveResult:
        duplicate = await self._existing_duplicate(tx, item, payload)
        if duplicate is not None:
            record = _to_record(duplicate, "persistent")
            return SaveResult.model_validate({**record.model_dump(), "deduplicated": True})
        memory, version = self._new_memory(item, payload, expires_at, actor)
        await tx.create(memory, [version], [Content(payload.hash, payload.body)])
        for link in item.links or []:
            await self._link_in(tx, memory.id, link.to_id, link.relation, link.weight, {}, actor)
        if payload.info.name == "annotation":
            target = payload.data["target_id"]
            target_memory = await tx.get(target)
            if target_memory is not None and target_memory.live(self.now()) and target != memory.id:
                await self._link_in(tx, memory.id, target, "references", 1.0, {}, actor)
        return SaveResult.model_validate(_to_record(memory, "persistent").model_dump())

    async def _save_working(
        self, item: SaveItem, payload: Payload, expires_at: str | None, actor: str
    ) -> SaveResult:
        working = WorkingTx(self.working)
        if item.id is not None and await self.store.get(item.id) is not None:
            raise conflict(
                "id_exists", f"Memory {item.id} already exists in the persistent tier.", id=item.id
            )
        if item.id is not None or item.dedupe:
            duplicate_id = (
                item.id
                if item.id is not None and self.working.peek(item.id) is not None
                else await working.find_by_hash(
                    item.namespace, payload.info.name, payload.hash, self.now()
                )
            )
            if duplicate_id is not None:
                existing = await working.get(duplicate_id)
                assert existing is not None, duplicate_id
                if existing.content_hash != payload.hash:
                    raise conflict(
                        "id_exists", f"Memory {duplicate_id} exists with another payload."
                    )
                record = _to_record(existing, "working")
                return SaveResult.model_validate({**record.model_dump(), "deduplicated": True})
        memory, version = self._new_memory(item, payload, expires_at, actor)
        working.create_entry(
            memory, [version], [Content(payload.hash, payload.body)], item.on_evict
        )
        return SaveResult.model_validate(_to_record(memory, "working").model_dump())

    async def save_many(self, items: Sequence[SaveItem]) -> SaveManyResult:
        """Save up to ``save_many_items_max`` items atomically: all are validated first, then
        the persistent ones are written in one transaction.

        Raises:
            InvalidArgument: too_many_items, or the first bad item's error with ``details.index``.
        """
        if len(items) > self.limits.save_many_items_max:
            raise invalid(
                "too_many_items",
                f"{len(items)} items given; save_many takes at most "
                f"{self.limits.save_many_items_max}.",
                "Split the batch.",
                limit=self.limits.save_many_items_max,
                size=len(items),
            )
        prepared: list[tuple[Payload, str | None, str]] = []
        for index, item in enumerate(items):
            try:
                if item.idempotency_key is not None:
                    raise invalid(
                        "schema_violation", "idempotency_key is not accepted inside save_many."
                    )
                prepared.append(self._prepare(item))
            except AiosError as error:
                error.details["index"] = index
                error.message = f"Item {index}: {error.message}"
                raise
        results: list[SaveResult] = []
        async with self.store.write() as tx:
            for index, (item, (payload, expires_at, actor)) in enumerate(
                zip(items, prepared, strict=True)
            ):
                if item.tier == "working":
                    continue
                try:
                    results.append(
                        await self._save_persistent(tx, item, payload, expires_at, actor)
                    )
                except AiosError as error:
                    error.details["index"] = index
                    raise
        persistent = iter(results)
        final: list[SaveResult] = []
        for item, (payload, expires_at, actor) in zip(items, prepared, strict=True):
            if item.tier == "working":
                final.append(await self._save_working(item, payload, expires_at, actor))
            else:
                final.append(next(persistent))
        self._changed(*(result.id for result in final if not result.deduplicated))
        await self._drain_promotions()
        return SaveManyResult(
            ids=[result.id for result in final],
            deduplicated=[result.deduplicated for result in final],
        )

    def new_id(self) -> str:
        """A fresh server id (importers assign ids before linking)."""
        return self._ids()

    async def import_graph(
        self, items: Sequence[SaveItem], links: Sequence[tuple[str, str, str, dict[str, Any]]]
    ) -> tuple[int, int]:
        """Save items and links in one transaction (imports): all or nothing.

        Raises:
            InvalidArgument, NotFound: the first bad item (``details.index``) or link.
        """
        if len(items) > self.limits.import_lines_max:
            raise invalid(
                "too_many_items",
                f"{len(items)} records given; one import takes at most "
                f"{self.limits.import_lines_max}.",
                limit=self.limits.import_lines_max,
                size=len(items),
            )
        prepared = []
        for index, item in enumerate(items):
            try:
                prepared.append(self._prepare(item))
            except AiosError as error:
                error.details["index"] = index
                raise
        async with self.store.write() as tx:
            for item, (payload, expires_at, actor) in zip(items, prepared, strict=True):
                await self._save_persistent(tx, item, payload, expires_at, actor)
            for from_id, to_id, relation, metadata in links:
                await self._link_in(tx, from_id, to_id, relation, 1.0, metadata, self.node_id)
        self._changed(*(item.id for item in items if item.id is not None))
        return len(items), len(links)

    # ---- versions -----------------------------------------------------------------------------

    async def _write_version(
        self,
        tx: StoreTx,
        memory: StoredMemory,
        payload: Payload,
        parents: Sequence[int],
        survivors: Sequence[int],
        clock: dict[str, int],
        reason: Reason,
        actor: str,
        **state: Any,
    ) -> tuple[StoredMemory, StoredVersion]:
        number = memory.version + 1
        heads = tuple(sorted([*survivors, number]))
        now = self.now()
        updated = replace(
            _with_payload(memory, payload),
            version=number,
            heads=heads,
            vector_clock=clock,
            updated_at=now,
            conflicted=len(heads) > 1,
            **state,
        )
        version = StoredVersion(
            memory.id, number, tuple(sorted(parents)), payload.hash, reason, actor, clock, True, now
        )
        await tx.append_version(updated, version, Content(payload.hash, payload.body))
        return updated, version

    async def _payload_of(self, tx: StoreTx, memory: StoredMemory, content_hash: str) -> Payload:
        body = await tx.content(content_hash)
        if body is None:
            raise missing("version_missing", memory.id, f"The body of {memory.id} is purged.")
        return payload_from_body(body, self.limits)

    async def update(
        self,
        memory_id: str,
        *,
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
        """Append a version (spec 2.6): fast-forward, sibling head, or no-op when unchanged.

        Raises:
            NotFound, Conflict (version_mismatch, concurrent_write), InvalidArgument.
        """
        check_id(memory_id)
        who = self._actor(actor)
        if data is not None and data_patch is not None:
            raise invalid("schema_violation", "Give data or data_patch, not both.")
        expires: dict[str, Any] = {}
        if ttl_s is not None:
            expires["expires_at"] = self._later(check_ttl(ttl_s, self.limits))
        async with self._tx_for(memory_id) as (tx, _):
            memory = await self._current(tx, memory_id, allow_deleted=False)
            heads = await tx.heads(memory_id)
            if expected_version is not None and expected_version != memory.version:
                raise conflict(
                    "version_mismatch",
                    f"Memory {memory_id} is at version {memory.version}, not {expected_version}.",
                    "Read it again and retry from the current version.",
                    head_version=memory.version,
                    head_clock=memory.vector_clock,
                )
            base_number = expected_version or base_version or memory.version
            base = next((h for h in heads if h.version == base_number), None)
            base = base or await tx.get_version(memory_id, base_number)
            if base is None:
                raise missing("version_missing", memory_id, version=base_number)
            current = await self._payload_of(tx, memory, base.content_hash)
            new_data = data if data is not None else current.data
            if data_patch is not None:
                new_data = merge_patch(current.data, data_patch)  # type: ignore[assignment]
            payload = build_payload(
                memory.type,
                new_data,
                tags if tags is not None else current.tags,
                text if text is not None else current.text,
                summary if summary is not None else current.summary,
                self.limits,
            )
            if payload.hash in {head.content_hash for head in heads}:
                return UpdateResult(
                    id=memory_id,
                    version=memory.version,
                    heads=list(memory.heads),
                    conflicted=memory.conflicted,
                    changed=False,
                    content_hash=memory.content_hash,
                    vector_clock=memory.vector_clock,
                )
            own = max((head.vector_clock.get(who, 0) for head in heads), default=0)
            clock = clocks.increment(clocks.merge(base.vector_clock, {who: own}), who)
            parents = {base.version} | {
                head.version for head in heads if clocks.dominated(head.vector_clock, clock)
            }
            survivors = [head.version for head in heads if head.version not in parents]
            if survivors and self.settings.conflict_policy == "reject":
                raise conflict(
                    "concurrent_write",
                    f"Memory {memory_id} changed concurrently (heads {survivors} not seen).",
                    "Read the current version and retry from it.",
                    heads=survivors,
                )
            updated, _ = await self._write_version(
                tx, memory, payload, sorted(parents), survivors, clock, reason, who, **expires
            )
        self._changed(memory_id, conflicts=bool(survivors) or memory.conflicted)
        return UpdateResult(
            id=memory_id,
            version=updated.version,
            heads=list(updated.heads),
            conflicted=updated.conflicted,
            changed=True,
            content_hash=updated.content_hash,
            vector_clock=updated.vector_clock,
        )

    async def resolve(
        self,
        memory_id: str,
        *,
        data: dict[str, Any] | None = None,
        keep_version: int | None = None,
        reason: Reason = "correction",
        actor: str | None = None,
    ) -> ResolveResult:
        """Join all heads of a conflicted memory into one version that is after each of them.

        Raises:
            Conflict: not_conflicted. NotFound. InvalidArgument.
        """
        check_id(memory_id)
        who = self._actor(actor)
        if (data is None) == (keep_version is None):
            raise invalid("schema_violation", "Give exactly one of data or keep_version.")
        async with self._tx_for(memory_id) as (tx, _):
            memory = await self._current(tx, memory_id, allow_deleted=False)
            if not memory.conflicted:
                raise conflict(
                    "not_conflicted", f"Memory {memory_id} has a single head.", id=memory_id
                )
            heads = await tx.heads(memory_id)
            if keep_version is not None:
                kept = await tx.get_version(memory_id, keep_version)
                if kept is None:
                    raise missing("version_missing", memory_id, version=keep_version)
                payload = await self._payload_of(tx, memory, kept.content_hash)
            else:
                current = await self._payload_of(tx, memory, memory.content_hash)
                payload = build_payload(
                    memory.type, data, current.tags, current.text, current.summary, self.limits
                )
            clock = clocks.increment(clocks.merge(*(h.vector_clock for h in heads)), who)
            parents = [head.version for head in heads]
            updated, _ = await self._write_version(
                tx, memory, payload, parents, [], clock, reason, who
            )
        self._changed(memory_id, conflicts=True)
        return ResolveResult(
            id=memory_id, version=updated.version, parents=parents, vector_clock=clock
        )

    async def _lifecycle(
        self, tx: StoreTx, memory: StoredMemory, reason: Reason, actor: str, **state: Any
    ) -> StoredMemory:
        """Tombstone, restore and decay are versions too: the prior payload, all heads as
        parents, a clock after each head."""
        heads = await tx.heads(memory.id)
        payload = await self._payload_of(tx, memory, memory.content_hash)
        clock = clocks.increment(clocks.merge(*(h.vector_clock for h in heads)), actor)
        updated, _ = await self._write_version(
            tx, memory, payload, [h.version for h in heads], [], clock, reason, actor, **state
        )
        return updated

    async def delete(
        self, memory_id: str, *, purge: bool = False, actor: str | None = None
    ) -> DeleteResult:
        """Tombstone a memory (a version with the prior payload); ``purge`` also drops its
        bodies and full-text entry.

        Raises:
            NotFound: missing (or already deleted when not purging).
        """
        check_id(memory_id)
        who = self._actor(actor)
        async with self._tx_for(memory_id) as (tx, tier):
            memory = await self._current(tx, memory_id, allow_deleted=purge)
            if memory.deleted_at is None:
                memory = await self._lifecycle(tx, memory, "correction", who, deleted_at=self.now())
            if purge and tier == "persistent":
                await tx.purge(memory_id)
        if purge and tier == "working":
            self.working.remove(memory_id)
        self._changed(memory_id, conflicts=memory.conflicted)
        assert memory.deleted_at is not None, memory
        return DeleteResult(id=memory_id, deleted_at=memory.deleted_at, purged=purge)

    async def restore(self, memory_id: str, *, actor: str | None = None) -> RestoreResult:
        """Bring a tombstoned memory back with a new version.

        Raises:
            NotFound: missing, or purged. Conflict: not deleted.
        """
        check_id(memory_id)
        who = self._actor(actor)
        async with self._tx_for(memory_id) as (tx, _):
            memory = await self._current(tx, memory_id, allow_deleted=True)
            if memory.deleted_at is None:
                raise conflict("not_deleted", f"Memory {memory_id} is not deleted.", id=memory_id)
            if memory.purged:
                raise missing("purged", memory_id, f"Memory {memory_id} was purged.")
            restored = await self._lifecycle(
                tx, memory, "correction", who, deleted_at=None, expires_at=None
            )
        self._changed(memory_id)
        return RestoreResult(id=memory_id, version=restored.version)

    # ---- lineage writes -----------------------------------------------------------------------

    async def evolve(
        self,
        memory_id: str,
        *,
        reason: Reason,
        data: dict[str, Any] | None = None,
        data_patch: dict[str, Any] | None = None,
        type_name: str | None = None,
        summary: str | None = None,
        tags: list[str] | None = None,
        actor: str | None = None,
    ) -> EvolveResult:
        """A new memory that succeeds ``memory_id`` (edge ``evolved_into``); the parent is
        unchanged and the child's clock is after the parent's.

        Raises:
            NotFound, InvalidArgument (working_tier_not_linkable, schema errors).
        """
        check_id(memory_id)
        who = self._actor(actor)
        if self.working.peek(memory_id) is not None:
            raise invalid(
                "working_tier_not_linkable",
                "evolve links the child to its parent; working memories cannot carry edges.",
                "Promote the memory first.",
            )
        async with self.store.write() as tx:
            parent = await self._current(tx, memory_id, allow_deleted=False)
            current = await self._payload_of(tx, parent, parent.content_hash)
            new_data: object = data if data is not None else current.data
            if data_patch is not None:
                new_data = merge_patch(current.data, data_patch)
            payload = build_payload(
                type_name or parent.type,
                new_data,
                tags if tags is not None else current.tags,
                current.text,
                summary if summary is not None else current.summary,
                self.limits,
            )
            item = SaveItem(type=payload.info.name, data=payload.data, namespace=parent.namespace)
            child, version = self._new_memory(item, payload, None, who)
            clock = clocks.increment(parent.vector_clock, who)
            child = replace(child, vector_clock=clock)
            version = replace(version, vector_clock=clock, reason=reason)
            await tx.create(child, [version], [Content(payload.hash, payload.body)])
            await self._link_in(tx, memory_id, child.id, "evolved_into", 1.0, {}, who)
        self._changed(child.id, memory_id)
        return EvolveResult(id=child.id, parent_id=memory_id, vector_clock=clock)

    async def merge(
        self,
        ids: Sequence[str],
        *,
        data: dict[str, Any],
        type_name: str | None = None,
        reason: Reason = "correction",
        summary: str | None = None,
        tags: list[str] | None = None,
        namespace: str | None = None,
        actor: str | None = None,
    ) -> MergeResult:
        """A new memory derived from 2..16 parents (edges ``derived_from`` to each), with a
        clock after every parent.

        Raises:
            InvalidArgument (too_many_items, type required), NotFound.
        """
        unique = list(dict.fromkeys(check_id(memory_id, "ids") for memory_id in ids))
        if not 2 <= len(unique) <= self.limits.merge_ids_max:
            raise invalid(
                "too_many_items",
                f"merge takes 2..{self.limits.merge_ids_max} distinct ids; {len(unique)} given.",
                limit=self.limits.merge_ids_max,
                size=len(unique),
            )
        who = self._actor(actor)
        if namespace is not None:
            check_namespace(namespace)
        for memory_id in unique:
            if self.working.peek(memory_id) is not None:
                raise invalid(
                    "working_tier_not_linkable",
                    f"Memory {memory_id} is a working memory; merge links persistent ones.",
                )
        async with self.store.write() as tx:
            parents = [await self._current(tx, mid, allow_deleted=False) for mid in unique]
            kinds = {parent.type for parent in parents}
            if type_name is None and len(kinds) > 1:
                raise invalid(
                    "schema_violation",
                    f"The parents have different types ({', '.join(sorted(kinds))}); give type.",
                    errors=[{"path": "type", "message": "required when parents differ"}],
                )
            spaces = {parent.namespace for parent in parents}
            target_space = namespace or (spaces.pop() if len(spaces) == 1 else "global")
            payload = build_payload(
                type_name or parents[0].type, data, tags, None, summary, self.limits
            )
            item = SaveItem(type=payload.info.name, data=payload.data, namespace=target_space)
            child, version = self._new_memory(item, payload, None, who)
            clock = clocks.increment(clocks.merge(*(p.vector_clock for p in parents)), who)
            child = replace(child, vector_clock=clock)
            version = replace(version, vector_clock=clock, reason=reason)
            await tx.create(child, [version], [Content(payload.hash, payload.body)])
            for parent in parents:
                await self._link_in(tx, child.id, parent.id, "derived_from", 1.0, {}, who)
        self._changed(child.id, *unique)
        return MergeResult(id=child.id, parents=unique, vector_clock=clock)

    async def promote(self, memory_id: str, *, ttl_s: int | None = None) -> MemoryRecord:
        """Move a working memory (all versions and clocks) to the persistent tier.

        Raises:
            NotFound, InvalidArgument (ttl_out_of_range).
        """
        located = await self._locate(memory_id)
        if located.tier == "persistent":
            return _to_record(located.memory, "persistent")
        expires_at = None if ttl_s is None else self._later(check_ttl(ttl_s, self.limits))
        entry = self.working.peek(memory_id)
        assert entry is not None, memory_id
        memory = await self._persist_entry(entry, expires_at)
        return _to_record(memory, "persistent")

    async def _persist_entry(self, entry: WorkingEntry, expires_at: str | None) -> StoredMemory:
        memory = replace(entry.memory, expires_at=expires_at)
        versions = sorted(entry.versions.values(), key=lambda v: v.version)
        async with self.store.write() as tx:
            await tx.create(
                memory, versions, [Content(h, body) for h, body in entry.contents.items()]
            )
        self.working.remove(memory.id)
        self._changed(memory.id)
        logger.info("memory.promoted", extra={"memory_id": memory.id})
        return memory

    async def _drain_promotions(self) -> None:
        while self.working.pending_promotions:
            entry = self.working.pending_promotions.pop(0)
            if await self.store.get(entry.memory.id) is None:
                await self._persist_entry(entry, None)
                self.working.remove(entry.memory.id)

    # ---- links --------------------------------------------------------------------------------

    async def _link_in(
        self,
        tx: StoreTx,
        from_id: str,
        to_id: str,
        relation_name: str,
        weight: float,
        metadata: dict[str, Any],
        actor: str,
    ) -> tuple[StoredEdge, bool]:
        source, target, relation, implied = normalize_relation(relation_name, from_id, to_id)
        if source == target:
            raise invalid("self_link", f"A memory cannot link to itself ({source}).")
        for endpoint in (source, target):
            if self.working.peek(endpoint) is not None:
                raise invalid(
                    "working_tier_not_linkable",
                    f"Memory {endpoint} is a working memory; working memories cannot carry edges.",
                    "Promote it first.",
                )
            await self._current(tx, endpoint, allow_deleted=False)
        meta = {**metadata, **implied}
        size = len(canonical_bytes(meta))
        if size > self.limits.edge_metadata_bytes_max:
            raise invalid(
                "content_too_large",
                f"Edge metadata is {size} bytes; the limit is "
                f"{self.limits.edge_metadata_bytes_max}.",
                limit=self.limits.edge_metadata_bytes_max,
                size=size,
            )
        existing = await tx.get_edge(source, target, relation)
        edge = StoredEdge(
            from_id=source,
            to_id=target,
            relation=relation,
            weight=weight,
            metadata=meta,
            created_at=existing.created_at if existing else self.now(),
            created_by=existing.created_by if existing else actor,
        )
        await tx.put_edge(edge)
        return edge, existing is None

    async def link(
        self,
        from_id: str,
        to_id: str,
        relation: str,
        *,
        weight: float = 1.0,
        metadata: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> LinkResult:
        """Create (or revive and update) the one edge of a triple.

        Raises:
            InvalidArgument (invalid_relation, self_link, working_tier_not_linkable), NotFound.
        """
        check_id(from_id, "from_id")
        check_id(to_id, "to_id")
        who = self._actor(actor)
        if not 0.0 <= weight <= 1.0:
            raise invalid("schema_violation", f"weight {weight} is outside [0, 1].")
        async with self.store.write() as tx:
            edge, created = await self._link_in(
                tx, from_id, to_id, relation, weight, metadata or {}, who
            )
        self._changed(edge.from_id, edge.to_id, conflicts=edge.relation == "contradicts")
        return LinkResult(edge=_to_edge(edge), created=created)

    async def unlink(self, from_id: str, to_id: str, relation: str | None = None) -> UnlinkResult:
        """Soft-unlink one relation between two memories, or all of them when omitted."""
        check_id(from_id, "from_id")
        check_id(to_id, "to_id")
        if relation is not None:
            source, target, name, _ = normalize_relation(relation, from_id, to_id)
            triples = [(source, target, name)]
        else:
            triples = [(from_id, to_id, name) for name in RELATIONS if name not in SYMMETRIC]
            low, high = sorted((from_id, to_id))
            triples += [(low, high, name) for name in sorted(SYMMETRIC)]
        async with self.store.write() as tx:
            removed = await tx.unlink(triples, self.now())
        if removed:
            self._changed(from_id, to_id, conflicts=True)
        return UnlinkResult(removed=removed)

    # ---- reads --------------------------------------------------------------------------------

    async def get(
        self, memory_id: str, *, version: int | None = None, include_deleted: bool = False
    ) -> MemoryRecord:
        """One record, or its view at ``version``.

        Raises:
            InvalidArgument: invalid_id. NotFound: missing, deleted, expired, version_missing.
        """
        located = await self._locate(memory_id, include_deleted=include_deleted)
        memory = located.memory
        if version is None or (version == memory.version and not memory.purged):
            return _to_record(memory, located.tier)
        if located.tier == "working":
            entry = self.working.peek(memory_id)
            assert entry is not None, memory_id
            stored_version = entry.versions.get(version)
            body = entry.contents.get(stored_version.content_hash) if stored_version else None
        else:
            stored_version = await self._read(self.store.get_version(memory_id, version))
            body = (
                await self._read(self.store.content(stored_version.content_hash))
                if stored_version
                else None
            )
        if stored_version is None or body is None:
            raise missing("version_missing", memory_id, version=version)
        payload = payload_from_body(body, self.limits)
        view = replace(
            _with_payload(memory, payload),
            version=version,
            vector_clock=stored_version.vector_clock,
            updated_at=stored_version.created_at,
        )
        return _to_record(view, located.tier)

    async def get_many(self, ids: Sequence[str], *, include_edges: bool = False) -> GetManyResult:
        """Live records of up to ``get_many_ids_max`` ids; the others are listed as missing."""
        if len(ids) > self.limits.get_many_ids_max:
            raise invalid(
                "too_many_items",
                f"{len(ids)} ids given; get_many takes at most {self.limits.get_many_ids_max}.",
                limit=self.limits.get_many_ids_max,
                size=len(ids),
            )
        for memory_id in ids:
            check_id(memory_id, "ids")
        records: list[MemoryRecord] = []
        missing_ids: list[str] = []
        for memory_id in dict.fromkeys(ids):
            try:
                records.append(_to_record(*self._unpack(await self._locate(memory_id))))
            except AiosError:
                missing_ids.append(memory_id)
        edges: list[Edge] = []
        if include_edges:
            persistent = [r.id for r in records if r.tier == "persistent"]
            stored = await self._read(self.store.edges_among(persistent, list(RELATIONS)))
            edges = [_to_edge(edge) for edge in stored]
        return GetManyResult(records=records, missing=missing_ids, edges=edges)

    @staticmethod
    def _unpack(located: _Located) -> tuple[StoredMemory, Tier]:
        return located.memory, located.tier

    async def history(self, memory_id: str, *, limit: int = 100) -> HistoryResult:
        """Versions, newest first (tombstoned memories included)."""
        if not 1 <= limit <= self.limits.history_limit_max:
            raise invalid(
                "limit_out_of_range", f"limit must be 1..{self.limits.history_limit_max}."
            )
        located = await self._locate(memory_id, include_deleted=True)
        if located.tier == "working":
            entry = self.working.peek(memory_id)
            assert entry is not None, memory_id
            versions = sorted(entry.versions.values(), key=lambda v: -v.version)[:limit]
        else:
            versions = await self._read(self.store.history(memory_id, limit))
        return HistoryResult(versions=[_to_version(v) for v in versions])

    def _filters(
        self,
        types: list[str] | None,
        namespace: str | None,
        tags: list[str] | None,
        created_after: str | None = None,
        updated_after: str | None = None,
        include_deleted: bool = False,
    ) -> Filters:
        if namespace is not None:
            check_namespace(namespace)
        return Filters(
            now=self.now(),
            types=tuple(resolve_type(t).name for t in types) if types else None,
            namespace=namespace,
            tags=tuple(check_tags(tags, self.limits)) if tags else None,
            created_after=_time_arg(created_after, "created_after"),
            updated_after=_time_arg(updated_after, "updated_after"),
            include_deleted=include_deleted,
        )

    def _working_matches(self, filters: Filters) -> list[StoredMemory]:
        found = []
        for entry in self.working.entries.values():
            memory = entry.memory
            if not filters.include_deleted and not memory.live(filters.now):
                continue
            if filters.types and memory.type not in filters.types:
                continue
            if filters.namespace is not None and memory.namespace != filters.namespace:
                continue
            if filters.tags and not set(filters.tags) & set(memory.tags):
                continue
            if filters.created_after and memory.created_at <= filters.created_after:
                continue
            if filters.updated_after and memory.updated_at <= filters.updated_after:
                continue
            found.append(memory)
        return found

    async def search(
        self,
        query: str,
        *,
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
        """Ranked full-text search over both tiers (RRF-fused), optionally semantic.

        Raises:
            InvalidArgument: empty_query, query_too_long, limit/offset out of range.
            SubsystemUnavailable: semantic modes without an embedder.
        """
        if len(query) > self.limits.query_chars_max:
            raise invalid(
                "query_too_long",
                f"The query has {len(query)} characters; the limit is "
                f"{self.limits.query_chars_max}.",
                limit=self.limits.query_chars_max,
                size=len(query),
            )
        terms, any_token = tokenize(query, self.limits.query_tokens_max)
        if not any_token:
            raise invalid("empty_query", "The query has no words to search for.")
        if not 1 <= limit <= self.limits.search_limit_max:
            raise invalid("limit_out_of_range", f"limit must be 1..{self.limits.search_limit_max}.")
        if not 0 <= offset <= self.limits.search_offset_max:
            raise invalid(
                "offset_out_of_range", f"offset must be 0..{self.limits.search_offset_max}."
            )
        filters = self._filters(
            types, namespace, tags, created_after, updated_after, include_deleted
        )
        if mode != "fulltext":
            return await self._semantic(query, mode, terms, match, filters, tier, limit, offset)
        if not terms:
            return SearchResult(hits=[])
        ranked = await self._fulltext_ranked(terms, match == "all", filters, tier, limit, offset)
        return await self._hits(ranked, terms)

    async def _fulltext_ranked(
        self,
        terms: list[str],
        match_all: bool,
        filters: Filters,
        tier: str,
        limit: int,
        offset: int,
    ) -> list[tuple[str, float]]:
        persistent: list[tuple[str, float]] = []
        working: list[tuple[str, float]] = []
        if tier != "working":
            window = limit if tier == "persistent" else limit + offset
            start = offset if tier == "persistent" else 0
            persistent = await self._read(
                self.store.search_fulltext(terms, match_all, filters, window, start)
            )
            if tier == "persistent":
                return persistent
        if tier != "persistent":
            scored = [
                (
                    memory.id,
                    term_frequency_score(
                        terms,
                        indexed_text(memory.data, memory.text, memory.summary)
                        + "\n"
                        + " ".join(memory.tags),
                        match_all,
                    ),
                )
                for memory in self._working_matches(filters)
            ]
            working = sorted(
                ((mid, score) for mid, score in scored if score > 0),
                key=lambda pair: (-pair[1], pair[0]),
            )
        if not persistent:
            return working[offset : offset + limit]
        if not working:
            return persistent[offset : offset + limit]
        fused = reciprocal_rank_fusion([[m for m, _ in persistent], [m for m, _ in working]])
        return fused[offset : offset + limit]

    async def _semantic(
        self,
        query: str,
        mode: str,
        terms: list[str],
        match: str,
        filters: Filters,
        tier: str,
        limit: int,
        offset: int,
    ) -> SearchResult:
        if self._embed is None:
            raise SubsystemUnavailable(
                "Semantic search needs the inference server's embeddings, which is not available.",
                hint="Use mode fulltext, or run the inference server under the AIOS host.",
                details={"reason": "semantic_search_disabled", "peer": "inference"},
            )
        vector = await self._embed(query)
        embedded = await self._read(
            self.store.list_page(
                replace(filters, types=("embedding",)),
                "updated_desc",
                self.limits.nodes_max_max,
                None,
            )
        )
        scored = sorted(
            (
                (str(memory.data["target_id"]), _cosine(vector, memory.data["vector"]))
                for memory in embedded
                if memory.data is not None and len(memory.data["vector"]) == len(vector)
            ),
            key=lambda pair: (-pair[1], pair[0]),
        )
        ranked = scored[: limit + offset]
        if mode == "hybrid" and terms:
            text = await self._fulltext_ranked(
                terms, match == "all", filters, tier, limit + offset, 0
            )
            ranked = reciprocal_rank_fusion([[m for m, _ in text], [m for m, _ in ranked]])
        return await self._hits(ranked[offset : offset + limit], terms)

    async def _hits(self, ranked: list[tuple[str, float]], terms: list[str]) -> SearchResult:
        if not ranked:
            return SearchResult(hits=[])
        best = ranked[0][1] or 1.0
        found: dict[str, tuple[StoredMemory, Tier]] = {}
        for memory_id in (m for m, _ in ranked):
            entry = self.working.peek(memory_id)
            if entry is not None:
                found[memory_id] = (entry.memory, "working")
        for memory in await self._read(
            self.store.get_many([m for m, _ in ranked if m not in found])
        ):
            found[memory.id] = (memory, "persistent")
        hits = []
        for memory_id, score in ranked:
            if memory_id not in found:
                continue
            memory, tier = found[memory_id]
            hits.append(
                SearchHit(
                    id=memory.id,
                    type=memory.type,
                    namespace=memory.namespace,
                    tier=tier,
                    score=round(score / best, 6),
                    snippet=_snippet(indexed_text(memory.data, memory.text, memory.summary), terms),
                    summary=memory.summary,
                    tags=list(memory.tags),
                    version=memory.version,
                    updated_at=memory.updated_at,
                )
            )
        return SearchResult(hits=hits)

    async def list_records(
        self,
        *,
        types: list[str] | None = None,
        namespace: str | None = None,
        tags: list[str] | None = None,
        tier: Literal["all", "working", "persistent"] = "all",
        order: ListOrder = "updated_desc",
        limit: int = 20,
        cursor: str | None = None,
    ) -> ListResult:
        """A page of records without data, newest first by default; keyset-paginated."""
        if not 1 <= limit <= self.limits.list_limit_max:
            raise invalid("limit_out_of_range", f"limit must be 1..{self.limits.list_limit_max}.")
        after = _decode_cursor(cursor)
        filters = self._filters(types, namespace, tags)
        stored: list[tuple[StoredMemory, Tier]] = []
        if tier != "working":
            page = await self._read(self.store.list_page(filters, order, limit, after))
            stored += [(memory, "persistent") for memory in page]
        if tier != "persistent":
            stored += [(memory, "working") for memory in self._working_matches(filters)]
        column = "updated_at" if order.startswith("updated") else "created_at"
        descending = order.endswith("desc")

        def key(pair: tuple[StoredMemory, Tier]) -> tuple[str, str]:
            return (getattr(pair[0], column), pair[0].id)

        if after is not None:
            stored = [p for p in stored if (key(p) < after if descending else key(p) > after)]
        stored.sort(key=key, reverse=descending)
        page_items = stored[:limit]
        next_cursor = None
        if len(page_items) == limit:
            next_cursor = _encode_cursor(key(page_items[-1]))
        return ListResult(
            records=[_summary(memory, memory_tier) for memory, memory_tier in page_items],
            next_cursor=next_cursor,
        )

    # ---- graph reads --------------------------------------------------------------------------

    def _check_depth(self, depth: int, maximum: int) -> int:
        if not 0 <= depth <= maximum:
            raise invalid(
                "depth_out_of_range",
                f"depth {depth} is outside 0..{maximum}.",
                min=0,
                max=maximum,
            )
        return depth

    async def neighbors(
        self,
        memory_id: str,
        *,
        depth: int = 1,
        direction: Direction = "both",
        relations: list[str] | None = None,
        include_deleted: bool = False,
        nodes_max: int = 200,
    ) -> NeighborsResult:
        """Breadth-first neighbourhood in (depth, id) order, each node once (spec 2.9)."""
        self._check_depth(depth, self.limits.traverse_depth_max)
        if not 1 <= nodes_max <= self.limits.nodes_max_max:
            raise invalid(
                "nodes_max_out_of_range", f"nodes_max must be 1..{self.limits.nodes_max_max}."
            )
        rels = check_relations(relations)
        located = await self._locate(memory_id, include_deleted=include_deleted)
        if located.tier == "working":
            rows = [(memory_id, 0)]
        else:
            rows = await self._read(
                self.store.neighbors(
                    memory_id, depth, direction, rels, include_deleted, nodes_max, self.now()
                )
            )
        truncated = len(rows) > nodes_max
        rows = rows[:nodes_max]
        ids = [node for node, _ in rows]
        stored = {m.id: m for m in await self._read(self.store.get_many(ids))}
        stored.setdefault(located.memory.id, located.memory)
        now = self.now()
        nodes = [
            NeighborNode(
                id=node,
                type=stored[node].type,
                depth=level,
                deleted=not stored[node].live(now),
                summary=stored[node].summary,
            )
            for node, level in rows
        ]
        edges = await self._read(self.store.edges_among(ids, rels))
        return NeighborsResult(nodes=nodes, edges=[_to_edge(e) for e in edges], truncated=truncated)

    async def path(
        self,
        from_id: str,
        to_id: str,
        *,
        depth_max: int = 4,
        direction: Direction = "out",
        relations: list[str] | None = None,
    ) -> PathResult:
        """The lexicographically smallest shortest path within ``depth_max`` hops."""
        if not 1 <= depth_max <= self.limits.path_depth_max:
            raise invalid(
                "depth_out_of_range",
                f"depth_max {depth_max} is outside 1..{self.limits.path_depth_max}.",
                min=1,
                max=self.limits.path_depth_max,
            )
        rels = check_relations(relations)
        await self._locate(from_id)
        await self._locate(to_id)
        now = self.now()

        async def expand(frontier: Sequence[str]) -> list[tuple[str, str, str]]:
            return await self.store.expand(frontier, rels, direction, False, now)

        steps = await self._read(shortest_path(from_id, to_id, depth_max, expand))
        if steps is None:
            return PathResult(found=False, nodes=[], edges=[], length=0)
        nodes = [node for node, _ in steps]
        among = await self._read(self.store.edges_among(nodes, rels))
        edges: list[Edge] = []
        for (previous, _), (node, relation) in itertools.pairwise(steps):
            edges.extend(
                _to_edge(edge)
                for edge in among
                if edge.relation == relation and {edge.from_id, edge.to_id} == {previous, node}
            )
        return PathResult(found=True, nodes=nodes, edges=edges, length=len(nodes) - 1)

    async def lineage(
        self,
        memory_id: str,
        *,
        direction: Literal["ancestors", "descendants", "both"] = "ancestors",
        depth_max: int = 10,
    ) -> LineageResult:
        """Ancestors follow ``derived_from`` forward and ``evolved_into`` backward; descendants
        the reverse. Tombstones are included and flagged."""
        if not 1 <= depth_max <= self.limits.lineage_depth_max:
            raise invalid(
                "depth_out_of_range",
                f"depth_max {depth_max} is outside 1..{self.limits.lineage_depth_max}.",
                min=1,
                max=self.limits.lineage_depth_max,
            )
        await self._locate(memory_id, include_deleted=True)
        result: dict[str, list[LineageEntry]] = {"ancestors": [], "descendants": []}
        now = self.now()
        for side in ("ancestors", "descendants"):
            if direction not in (side, "both"):
                continue
            rows = await self._read(self.store.lineage(memory_id, side == "ancestors", depth_max))
            live = {m.id: m.live(now) for m in await self.store.get_many([r[0] for r in rows])}
            result[side] = [
                LineageEntry(id=node, depth=level, relation=relation, deleted=not live.get(node))
                for node, level, relation in rows
            ]
        return LineageResult(**result)

    async def conflicts(
        self, *, namespace: str | None = None, memory_id: str | None = None, limit: int = 50
    ) -> ConflictsResult:
        """Memories with sibling heads, and live ``contradicts`` edges (either direction)."""
        if namespace is not None:
            check_namespace(namespace)
        if memory_id is not None:
            check_id(memory_id)
        if not 1 <= limit <= self.limits.conflicts_limit_max:
            raise invalid(
                "limit_out_of_range", f"limit must be 1..{self.limits.conflicts_limit_max}."
            )
        stored = await self._read(self.store.conflicted(namespace, memory_id, limit))
        working = [
            entry.memory
            for entry in self.working.entries.values()
            if entry.memory.conflicted
            and (namespace is None or entry.memory.namespace == namespace)
            and (memory_id is None or entry.memory.id == memory_id)
        ]
        siblings = sorted(stored + working, key=lambda m: m.id)[:limit]
        edges = await self._read(self.store.contradictions(namespace, memory_id, limit))
        return ConflictsResult(
            siblings=[Sibling(id=m.id, heads=list(m.heads)) for m in siblings],
            contradictions=[
                Contradiction(a=e.from_id, b=e.to_id, created_at=e.created_at) for e in edges
            ],
        )

    # ---- catalogue, stats, maintenance --------------------------------------------------------

    def types(self, type_name: str | None = None) -> TypesResult:
        """The 24 types with JSON Schema, example and default TTL (works without a backend)."""
        infos = [resolve_type(type_name)] if type_name is not None else list(TYPES.values())
        return TypesResult(
            types=[
                TypeDescription(
                    name=info.name,
                    subcategory=info.subcategory,
                    schema_version=info.schema_version,
                    json_schema=info.model.model_json_schema(),
                    example=info.example,
                    default_ttl_s=info.default_ttl_s,
                )
                for info in infos
            ]
        )

    async def stats(self, namespace: str | None = None) -> StatsResult:
        """Counts by tier, type, namespace and tag; backend and working budget use."""
        if namespace is not None:
            check_namespace(namespace)
        now = self.now()
        counts = await self._read(self.store.stats(namespace, now))
        working = [
            entry.memory
            for entry in self.working.entries.values()
            if entry.memory.live(now) and (namespace is None or entry.memory.namespace == namespace)
        ]
        by_type = dict(counts["by_type"])
        by_namespace = dict(counts["by_namespace"])
        by_tag = dict(counts["by_tag"])
        for memory in working:
            by_type[memory.type] = by_type.get(memory.type, 0) + 1
            by_namespace[memory.namespace] = by_namespace.get(memory.namespace, 0) + 1
            for tag in memory.tags:
                by_tag[tag] = by_tag.get(tag, 0) + 1
        return StatsResult(
            backend=self.store.backend,
            by_tier={"persistent": counts["live"], "working": len(working)},
            by_type=by_type,
            by_namespace=by_namespace,
            by_tag=by_tag,
            deleted=counts["deleted"],
            edges=counts["edges"],
            contents=counts["contents"],
            index_state="ready",
            working_items=self.working.items,
            working_bytes=self.working.bytes,
            working_items_max=self.limits.working_items_max,
            working_bytes_max=self.limits.working_bytes_max,
            evictions=dict(self.working.evictions),
        )

    async def reindex(
        self,
        target: Literal["fulltext", "embeddings"] = "fulltext",
        progress: Callable[[float, float, str], Awaitable[None]] | None = None,
    ) -> ReindexResult:
        """Rebuild the full-text index (embeddings need the inference server)."""
        if target == "embeddings":
            if self._embed is None:
                raise SubsystemUnavailable(
                    "Embeddings need the inference server, which is not available.",
                    details={"reason": "semantic_search_disabled", "peer": "inference"},
                )
            raise invalid("unsupported", "Re-embedding is not implemented in this version.")
        if progress is not None:
            await progress(0, 1, "rebuilding the full-text index")
        rebuilt = await self.store.reindex_fulltext()
        if progress is not None:
            await progress(1, 1, f"rebuilt {rebuilt} entries")
        return ReindexResult(target=target, rebuilt=rebuilt)

    async def digest(self) -> str:
        """SHA-256 over the canonical dump of durable state (working tier excluded)."""
        dump = await self.store.dump()
        document = {
            "records": dump["records"],
            "versions": [
                [
                    v.memory_id,
                    v.version,
                    list(v.parents),
                    v.content_hash,
                    v.reason,
                    v.actor,
                    v.vector_clock,
                    v.is_head,
                    v.created_at,
                ]
                for v in dump["versions"]
            ],
            "edges": [
                [e.from_id, e.to_id, e.relation, e.weight, e.metadata, e.created_at, e.created_by]
                for e in dump["edges"]
            ],
        }
        return "sha256:" + hashlib.sha256(canonical_bytes(document)).hexdigest()

    async def sweep_working(self) -> int:
        """Drop expired working memories (they are already invisible)."""
        expired = self.working.expired(self.now())
        for memory_id in expired:
            self.working.remove(memory_id)
        if expired:
            logger.info("working.swept", extra={"count": len(expired)})
        return len(expired)

    async def sweep_persistent(self) -> int:
        """Tombstone persistent memories past their TTL with a ``decay`` version."""
        decayed = 0
        for memory_id in await self.store.due_for_expiry(self.now(), _SWEEP_BATCH):
            async with self.store.write() as tx:
                memory = await tx.get(memory_id)
                if memory is None or memory.deleted_at is not None:
                    continue
                await self._lifecycle(tx, memory, "decay", self.node_id, deleted_at=self.now())
            self._changed(memory_id)
            decayed += 1
        return decayed

    async def run_sweepers(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Background loop: working sweep every ``working_sweep_s``, persistent decay every
        ``persistent_sweep_s``. Stops only by cancellation."""
        task_status.started()
        last_persistent = 0.0
        while True:
            await anyio.sleep(self.settings.working_sweep_s)
            await self.sweep_working()
            if anyio.current_time() - last_persistent >= self.settings.persistent_sweep_s:
                last_persistent = anyio.current_time()
                try:
                    await self.sweep_persistent()
                except SubsystemUnavailable:
                    logger.warning("sweep.backend_unavailable")


def _time_arg(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return format_time(parse_time(value))
    except ValueError:
        raise invalid("schema_violation", f"{field} {value!r} is not an ISO-8601 time.") from None


def _summary(memory: StoredMemory, tier: Tier) -> MemorySummary:
    return MemorySummary(
        id=memory.id,
        type=memory.type,
        namespace=memory.namespace,
        tier=tier,
        summary=memory.summary,
        tags=list(memory.tags),
        version=memory.version,
        content_hash=memory.content_hash,
        created_at=memory.created_at,
        updated_at=memory.updated_at,
        deleted_at=memory.deleted_at,
        expires_at=memory.expires_at,
    )


def _snippet(text: str, terms: Sequence[str], width: int = 160) -> str:
    lowered = text.lower()
    positions = [lowered.find(term) for term in terms if lowered.find(term) >= 0]
    start = max(0, min(positions) - 40) if positions else 0
    return text[start : start + width]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = (sum(x * x for x in a) ** 0.5) * (sum(y * y for y in b) ** 0.5)
    return dot / norms if norms else 0.0


def _encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(part, str) for part in value)
        ):
            return (value[0], value[1])
    except (ValueError, binascii.Error):
        pass
    raise invalid("invalid_cursor", "The cursor is not one this server returned.")
