"""The backend contract (spec/memory.md section 3.4): row types and the ``MemoryStore`` protocol.

Validation, hashing, clocks, policies, BFS ordering and ``path`` live in the service; a backend
stores rows and answers the primitive queries. Both backends (``store_sqlite``, ``store_neo4j``)
pass the same contract tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

__all__ = [
    "RELATIONS",
    "SYMMETRIC",
    "Content",
    "Direction",
    "Filters",
    "ListOrder",
    "MemoryStore",
    "StoreTx",
    "StoredEdge",
    "StoredMemory",
    "StoredVersion",
]

RELATIONS: Final[tuple[str, ...]] = (
    "evolved_into",
    "derived_from",
    "supersedes",
    "contradicts",
    "supports",
    "references",
    "part_of",
    "triggers",
    "blocked_by",
    "related_to",
    "resolves",
    "depends_on",
    "implements",
)
SYMMETRIC: Final[frozenset[str]] = frozenset({"contradicts", "related_to"})

Direction = Literal["out", "in", "both"]
ListOrder = Literal["updated_desc", "updated_asc", "created_desc", "created_asc"]


@dataclass(frozen=True)
class StoredMemory:
    """One persistent record as stored (the primary head's payload inline)."""

    id: str
    type: str
    subcategory: str
    schema_version: int
    namespace: str
    version: int
    heads: tuple[int, ...]
    content_hash: str
    vector_clock: dict[str, int]
    data: dict[str, Any] | None
    text: str | None
    summary: str | None
    tags: tuple[str, ...]
    created_at: str
    updated_at: str
    deleted_at: str | None = None
    expires_at: str | None = None
    conflicted: bool = False
    purged: bool = False

    def live(self, now: str) -> bool:
        """Neither tombstoned nor past its expiry."""
        return self.deleted_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class StoredVersion:
    memory_id: str
    version: int
    parents: tuple[int, ...]
    content_hash: str
    reason: str
    actor: str
    vector_clock: dict[str, int]
    is_head: bool
    created_at: str


@dataclass(frozen=True)
class StoredEdge:
    from_id: str
    to_id: str
    relation: str
    weight: float
    metadata: dict[str, Any]
    created_at: str
    created_by: str
    deleted_at: str | None = None


@dataclass(frozen=True)
class Content:
    """A content body (canonical JSON of the payload) addressed by its hash."""

    hash: str
    body: str


@dataclass(frozen=True)
class Filters:
    """Read filters shared by ``list`` and ``search_fulltext``; ``now`` hides expired records."""

    now: str
    types: tuple[str, ...] | None = None
    namespace: str | None = None
    tags: tuple[str, ...] | None = None
    created_after: str | None = None
    updated_after: str | None = None
    include_deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def indexed_text(data: dict[str, Any] | None, text: str | None, summary: str | None) -> str:
    """Full-text body: explicit text, summary, then every top-level string (or list of
    strings) in ``data``, joined by newlines (spec 2.1)."""
    parts = [part for part in (text, summary) if part]
    for value in (data or {}).values():
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            parts.extend(value)
    return "\n".join(parts)


class StoreTx(Protocol):
    """One write transaction: everything in it commits or rolls back together."""

    async def get(self, memory_id: str) -> StoredMemory | None:
        """The record, locked against concurrent writers until the transaction ends."""
        ...

    async def heads(self, memory_id: str) -> list[StoredVersion]: ...

    async def get_version(self, memory_id: str, version: int) -> StoredVersion | None: ...

    async def content(self, content_hash: str) -> str | None: ...

    async def find_by_hash(
        self, namespace: str, type_name: str, content_hash: str, now: str
    ) -> str | None: ...

    async def create(
        self, memory: StoredMemory, versions: Sequence[StoredVersion], contents: Sequence[Content]
    ) -> None: ...

    async def append_version(
        self, memory: StoredMemory, version: StoredVersion, content: Content
    ) -> None:
        """Insert ``version``, clear ``is_head`` on its parents, store ``memory``'s new state."""
        ...

    async def purge(self, memory_id: str) -> None: ...

    async def get_edge(self, from_id: str, to_id: str, relation: str) -> StoredEdge | None: ...

    async def put_edge(self, edge: StoredEdge) -> None: ...

    async def unlink(self, pairs: Sequence[tuple[str, str, str]], now: str) -> int: ...

    async def idempotency_get(self, key: str) -> tuple[str, str] | None: ...

    async def idempotency_put(self, key: str, request_hash: str, result: str, now: str) -> None: ...


class MemoryStore(Protocol):
    """A persistent backend."""

    backend: str

    async def init_schema(self) -> None: ...

    def write(self) -> AbstractAsyncContextManager[StoreTx]: ...

    async def probe(self) -> None:
        """Raise ``SubsystemUnavailable`` fast when the backend cannot be reached."""
        ...

    async def meta_get(self, key: str) -> str | None: ...

    async def meta_set(self, key: str, value: str) -> None: ...

    async def get(self, memory_id: str) -> StoredMemory | None: ...

    async def get_many(self, ids: Sequence[str]) -> list[StoredMemory]: ...

    async def get_version(self, memory_id: str, version: int) -> StoredVersion | None: ...

    async def content(self, content_hash: str) -> str | None: ...

    async def history(self, memory_id: str, limit: int) -> list[StoredVersion]: ...

    async def find_by_hash(
        self, namespace: str, type_name: str, content_hash: str, now: str
    ) -> str | None: ...

    async def list_page(
        self, filters: Filters, order: ListOrder, limit: int, after: tuple[str, str] | None
    ) -> list[StoredMemory]: ...

    async def search_fulltext(
        self, terms: Sequence[str], match_all: bool, filters: Filters, limit: int, offset: int
    ) -> list[tuple[str, float]]: ...

    async def expand(
        self,
        frontier: Sequence[str],
        relations: Sequence[str],
        direction: Direction,
        include_deleted: bool,
        now: str,
    ) -> list[tuple[str, str, str]]:
        """Live edges leaving the frontier: ``(frontier node, relation, neighbour)``."""
        ...

    async def neighbors(
        self,
        start: str,
        depth: int,
        direction: Direction,
        relations: Sequence[str],
        include_deleted: bool,
        nodes_max: int,
        now: str,
    ) -> list[tuple[str, int]]:
        """``(id, depth)`` in (depth, id) order, at most ``nodes_max + 1`` rows."""
        ...

    async def lineage(
        self, memory_id: str, ancestors: bool, depth_max: int
    ) -> list[tuple[str, int, str]]:
        """``(id, depth, relation)`` in (depth, id) order, tombstones included."""
        ...

    async def edges_among(
        self, ids: Sequence[str], relations: Sequence[str]
    ) -> list[StoredEdge]: ...

    async def conflicted(
        self, namespace: str | None, memory_id: str | None, limit: int
    ) -> list[StoredMemory]: ...

    async def contradictions(
        self, namespace: str | None, memory_id: str | None, limit: int
    ) -> list[StoredEdge]: ...

    async def due_for_expiry(self, now: str, limit: int) -> list[str]: ...

    async def stats(self, namespace: str | None, now: str) -> dict[str, Any]: ...

    async def dump(self) -> dict[str, Any]:
        """Durable state for the digest: records, versions, live edges, canonically ordered."""
        ...

    async def reindex_fulltext(self) -> int: ...

    async def close(self) -> None: ...
