"""Pick the backend from the settings: embedded SQLite by default, Neo4j with one setting."""

from __future__ import annotations

from aios_memory.config import MemorySettings
from aios_memory.store import MemoryStore
from aios_memory.store_sqlite import SqliteStore

__all__ = ["make_store"]


def make_store(settings: MemorySettings) -> MemoryStore:
    """The configured backend, not yet initialized (``MemoryService.open`` does that)."""
    if settings.backend == "neo4j":
        from aios_memory.store_neo4j import Neo4jStore

        return Neo4jStore.from_settings(settings)
    return SqliteStore(settings.sqlite_path(), settings.synchronous)
