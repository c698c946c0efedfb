"""Settings of the memory server: backend choice, limits and policies (spec/memory.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from aios_shared.config import ServerSettings

__all__ = ["MemoryLimits", "MemorySettings"]


class MemoryLimits(BaseModel):
    """Every bound the server enforces, by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    content_bytes_max: int = Field(256 * 1024, gt=0, description="Canonical payload size.")
    edge_metadata_bytes_max: int = Field(4096, gt=0)
    save_many_items_max: int = Field(500, gt=0)
    get_many_ids_max: int = Field(100, gt=0)
    tags_max: int = Field(32, gt=0)
    working_items_max: int = Field(10_000, gt=0)
    working_bytes_max: int = Field(64 * 1024 * 1024, gt=0)
    ttl_s_max: int = Field(604_800, gt=0)
    ttl_s_default: int = Field(3_600, gt=0)
    traverse_depth_max: int = Field(6, ge=0, le=6)
    nodes_max_max: int = Field(10_000, gt=0)
    path_depth_max: int = Field(6, gt=0, le=6)
    lineage_depth_max: int = Field(64, gt=0)
    query_chars_max: int = Field(1_000, gt=0)
    query_tokens_max: int = Field(32, gt=0)
    search_limit_max: int = Field(100, gt=0)
    search_offset_max: int = Field(1_000, ge=0)
    list_limit_max: int = Field(200, gt=0)
    history_limit_max: int = Field(1_000, gt=0)
    merge_ids_max: int = Field(16, ge=2)
    conflicts_limit_max: int = Field(500, gt=0)
    import_lines_max: int = Field(10_000, gt=0)
    export_page_max: int = Field(1_000, gt=0)
    query_timeout_s: float = Field(10.0, gt=0)
    backend_timeout_s: float = Field(2.0, gt=0, description="Connect/probe deadline.")
    idempotency_ttl_s: int = Field(86_400, gt=0)


class MemorySettings(ServerSettings):
    """``AIOS_BACKEND=neo4j`` with ``AIOS_NEO4J_URL``/``_USER``/``_PASSWORD``/``_DATABASE``
    switches from the embedded SQLite default to Neo4j."""

    backend: Literal["sqlite", "neo4j"] = "sqlite"
    database_path: Path | None = Field(None, description="SQLite file; default $home/memory.db.")
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    neo4j_url: str = "neo4j://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    neo4j_database: str = "neo4j"
    neo4j_exclusive: bool = Field(
        False, description="This server is Neo4j's only writer: enables the read cache."
    )
    neo4j_schema_http_url: str | None = Field(
        None,
        description="ArcadeDB only: its HTTP URL, used to create the full-text index in SQL "
        "(ArcadeDB rejects Cypher full-text DDL; see notes/graph-backend.md section 3).",
    )
    conflict_policy: Literal["siblings", "reject"] = "siblings"
    node_id: str | None = Field(
        None, description="Server actor id; default a UUID kept in the store's meta."
    )
    working_sweep_s: float = Field(1.0, gt=0)
    persistent_sweep_s: float = Field(60.0, gt=0)
    limits: MemoryLimits = Field(default_factory=MemoryLimits)

    def sqlite_path(self) -> Path:
        return self.database_path or self.home / "memory.db"
