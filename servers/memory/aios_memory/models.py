"""Pydantic models that cross the MCP boundary: the ``Mem[S]`` record and every tool result."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aios_memory.clocks import Reason

__all__ = [
    "ConflictsResult",
    "Contradiction",
    "DeleteResult",
    "Edge",
    "EvolveResult",
    "ExportResult",
    "GetManyResult",
    "HistoryResult",
    "ImportResult",
    "LineageEntry",
    "LineageResult",
    "LinkResult",
    "LinkSpec",
    "ListResult",
    "Mem",
    "MemoryRecord",
    "MemorySummary",
    "MergeResult",
    "NeighborNode",
    "NeighborsResult",
    "PathResult",
    "ReindexResult",
    "ResolveResult",
    "RestoreResult",
    "SaveItem",
    "SaveManyResult",
    "SaveResult",
    "SearchHit",
    "SearchResult",
    "Sibling",
    "StatsResult",
    "TypeDescription",
    "TypesResult",
    "UnlinkResult",
    "UpdateResult",
    "VersionEntry",
]

S = TypeVar("S")
Tier = Literal["working", "persistent"]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mem(_Wire, Generic[S]):
    """One typed memory record (spec 2.3); ``data`` is ``None`` once purged."""

    id: str
    type: str
    subcategory: str
    schema_version: int
    namespace: str
    data: S | None
    text: str | None = None
    summary: str | None = None
    tags: list[str]
    version: int = Field(ge=1)
    heads: list[int]
    content_hash: str
    vector_clock: dict[str, int]
    created_at: str
    updated_at: str
    deleted_at: str | None = None
    expires_at: str | None = None
    tier: Tier
    conflicted: bool = False
    purged: bool = False


MemoryRecord = Mem[dict[str, Any]]


class SaveResult(MemoryRecord):
    """The saved (or deduplicated) record."""

    deduplicated: bool = False


class SaveManyResult(_Wire):
    ids: list[str]
    deduplicated: list[bool]


class VersionEntry(_Wire):
    memory_id: str
    version: int
    parents: list[int]
    content_hash: str
    reason: Reason
    actor: str
    vector_clock: dict[str, int]
    created_at: str
    is_head: bool


class Edge(_Wire):
    from_id: str
    to_id: str
    relation: str
    weight: float
    metadata: dict[str, Any]
    created_at: str
    created_by: str


class GetManyResult(_Wire):
    records: list[MemoryRecord]
    missing: list[str]
    edges: list[Edge]


class SearchHit(_Wire):
    id: str
    type: str
    namespace: str
    tier: Tier
    score: float
    snippet: str
    summary: str | None
    tags: list[str]
    version: int
    updated_at: str


class SearchResult(_Wire):
    hits: list[SearchHit]


class MemorySummary(_Wire):
    """A record without its data (``list``)."""

    id: str
    type: str
    namespace: str
    tier: Tier
    summary: str | None
    tags: list[str]
    version: int
    content_hash: str
    created_at: str
    updated_at: str
    deleted_at: str | None
    expires_at: str | None


class ListResult(_Wire):
    records: list[MemorySummary]
    next_cursor: str | None


class UpdateResult(_Wire):
    id: str
    version: int
    heads: list[int]
    conflicted: bool
    changed: bool
    content_hash: str
    vector_clock: dict[str, int]


class EvolveResult(_Wire):
    id: str
    parent_id: str
    vector_clock: dict[str, int]


class MergeResult(_Wire):
    id: str
    parents: list[str]
    vector_clock: dict[str, int]


class ResolveResult(_Wire):
    id: str
    version: int
    parents: list[int]
    vector_clock: dict[str, int]


class DeleteResult(_Wire):
    id: str
    deleted_at: str
    purged: bool


class RestoreResult(_Wire):
    id: str
    version: int


class LinkResult(_Wire):
    edge: Edge
    created: bool


class UnlinkResult(_Wire):
    removed: int


class NeighborNode(_Wire):
    id: str
    type: str
    depth: int
    deleted: bool
    summary: str | None


class NeighborsResult(_Wire):
    nodes: list[NeighborNode]
    edges: list[Edge]
    truncated: bool


class PathResult(_Wire):
    found: bool
    nodes: list[str]
    edges: list[Edge]
    length: int


class HistoryResult(_Wire):
    versions: list[VersionEntry]


class LineageEntry(_Wire):
    id: str
    depth: int
    relation: str
    deleted: bool


class LineageResult(_Wire):
    ancestors: list[LineageEntry]
    descendants: list[LineageEntry]


class Sibling(_Wire):
    id: str
    heads: list[int]


class Contradiction(_Wire):
    a: str
    b: str
    created_at: str


class ConflictsResult(_Wire):
    siblings: list[Sibling]
    contradictions: list[Contradiction]


class TypeDescription(_Wire):
    name: str
    subcategory: str
    schema_version: int
    json_schema: dict[str, Any]
    example: dict[str, Any]
    default_ttl_s: int | None


class TypesResult(_Wire):
    types: list[TypeDescription]


class StatsResult(_Wire):
    backend: str
    by_tier: dict[str, int]
    by_type: dict[str, int]
    by_namespace: dict[str, int]
    by_tag: dict[str, int]
    deleted: int
    edges: int
    contents: int
    index_state: str
    working_items: int
    working_bytes: int
    working_items_max: int
    working_bytes_max: int
    evictions: dict[str, int]


class ReindexResult(_Wire):
    target: str
    rebuilt: int


class ImportResult(_Wire):
    format: str
    memories: int
    edges: int
    annotations: int
    skipped: list[str]


class ExportResult(_Wire):
    jsonl: str
    count: int
    next_cursor: str | None


class LinkSpec(BaseModel):
    """A link made together with a save: new memory -> ``to_id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to_id: str
    relation: str
    weight: float = Field(1.0, ge=0.0, le=1.0, allow_inf_nan=False)


class SaveItem(BaseModel):
    """The arguments of ``save`` (one item of ``save_many``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(description="One of the 24 memory types (see the types tool).")
    data: dict[str, Any] = Field(description="The payload, validated against the type's schema.")
    text: str | None = Field(None, description="Free text, indexed with weight 10.")
    summary: str | None = Field(None, description="Short summary, indexed with weight 5.")
    tags: list[str] | None = Field(None, description="At most 32 tags.")
    namespace: str = "global"
    tier: Tier = "persistent"
    ttl_s: int | None = Field(None, description="Working: 1..604800 (default 3600).")
    on_evict: Literal["drop", "promote"] = "drop"
    id: str | None = Field(None, description="Client-supplied id (imports, tests).")
    reason: Reason = "observation"
    dedupe: bool = True
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    links: list[LinkSpec] | None = Field(None, max_length=64)
    actor: str | None = None
