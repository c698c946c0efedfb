"""The embedded SQLite backend (spec/memory.md section 3.2): WAL, FTS5 with bm25 weights,
recursive-CTE traversal, one writer.

Each connection is driven from worker threads one call at a time (``anyio.to_thread`` with a
per-connection limiter), so the event loop never blocks and one call is one thread hop. Writes go
through the single writer connection under a lock, each as one ``BEGIN IMMEDIATE`` transaction;
reads use a second connection and see only committed state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio

from aios_memory.store import (
    RELATIONS,
    SYMMETRIC,
    Content,
    Direction,
    Filters,
    ListOrder,
    StoredEdge,
    StoredMemory,
    StoredVersion,
    indexed_text,
)

__all__ = ["SqliteStore"]

T = TypeVar("T")

MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE contents (hash TEXT PRIMARY KEY, body TEXT NOT NULL, size INTEGER NOT NULL,
      refs INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE memories (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
      subcategory TEXT NOT NULL, schema_version INTEGER NOT NULL, namespace TEXT NOT NULL,
      version INTEGER NOT NULL, heads TEXT NOT NULL, content_hash TEXT NOT NULL,
      vector_clock TEXT NOT NULL, data TEXT, explicit_text TEXT, text TEXT NOT NULL, summary TEXT,
      tags TEXT NOT NULL, tags_text TEXT NOT NULL, conflicted INTEGER NOT NULL DEFAULT 0,
      purged INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
      deleted_at TEXT, expires_at TEXT);
    CREATE INDEX memories_ns_type ON memories(namespace, type, updated_at);
    CREATE INDEX memories_updated ON memories(updated_at, id);
    CREATE INDEX memories_created ON memories(created_at, id);
    CREATE INDEX memories_dedup ON memories(namespace, content_hash) WHERE deleted_at IS NULL;
    CREATE INDEX memories_expires ON memories(expires_at)
      WHERE expires_at IS NOT NULL AND deleted_at IS NULL;
    CREATE INDEX memories_conflicted ON memories(conflicted) WHERE conflicted = 1;
    CREATE TABLE versions (memory_id TEXT NOT NULL, version INTEGER NOT NULL, parents TEXT NOT NULL,
      content_hash TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL,
      vector_clock TEXT NOT NULL, is_head INTEGER NOT NULL, created_at TEXT NOT NULL,
      PRIMARY KEY (memory_id, version)) WITHOUT ROWID;
    CREATE TABLE edges (from_id TEXT NOT NULL, to_id TEXT NOT NULL, relation TEXT NOT NULL,
      weight REAL NOT NULL DEFAULT 1.0 CHECK (weight BETWEEN 0 AND 1),
      metadata TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL, created_by TEXT NOT NULL,
      deleted_at TEXT, PRIMARY KEY (from_id, relation, to_id), CHECK (from_id <> to_id))
      WITHOUT ROWID;
    CREATE INDEX edges_in ON edges(to_id, relation, from_id);
    CREATE VIRTUAL TABLE memories_fts USING fts5(text, summary, tags_text, content='memories',
      content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2');
    CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
      INSERT INTO memories_fts(rowid, text, summary, tags_text)
        VALUES (new.rowid, new.text, new.summary, new.tags_text);
    END;
    CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
      INSERT INTO memories_fts(memories_fts, rowid, text, summary, tags_text)
        VALUES ('delete', old.rowid, old.text, old.summary, old.tags_text);
    END;
    CREATE TRIGGER memories_au AFTER UPDATE OF text, summary, tags_text ON memories BEGIN
      INSERT INTO memories_fts(memories_fts, rowid, text, summary, tags_text)
        VALUES ('delete', old.rowid, old.text, old.summary, old.tags_text);
      INSERT INTO memories_fts(rowid, text, summary, tags_text)
        VALUES (new.rowid, new.text, new.summary, new.tags_text);
    END;
    CREATE TABLE idempotency (key TEXT PRIMARY KEY, request_hash TEXT NOT NULL,
      result TEXT NOT NULL, created_at TEXT NOT NULL);
    """,
)

_MEMORY_COLUMNS: Final = (
    "id, type, subcategory, schema_version, namespace, version, heads, content_hash, "
    "vector_clock, data, explicit_text, summary, tags, created_at, updated_at, deleted_at, "
    "expires_at, conflicted, purged"
)
_M_COLUMNS: Final = ", ".join(f"m.{name.strip()}" for name in _MEMORY_COLUMNS.split(","))
_VERSION_COLUMNS: Final = (
    "memory_id, version, parents, content_hash, reason, actor, vector_clock, is_head, created_at"
)
_EDGE_COLUMNS: Final = (
    "from_id, to_id, relation, weight, metadata, created_at, created_by, deleted_at"
)
_LIVE: Final = "(m.deleted_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > :now))"

_NEIGHBORS_SQL: Final = f"""
WITH RECURSIVE bfs(id, depth) AS (
  SELECT :start, 0
  UNION
  SELECT e.to_id, b.depth + 1 FROM bfs b JOIN edges e ON e.from_id = b.id
   JOIN memories m ON m.id = e.to_id AND (:incl OR {_LIVE})
   WHERE b.depth < :d AND e.deleted_at IS NULL
     AND e.relation IN (SELECT value FROM json_each(:rels))
     AND (:dir <> 'in' OR e.relation IN (SELECT value FROM json_each(:sym)))
  UNION
  SELECT e.from_id, b.depth + 1 FROM bfs b JOIN edges e ON e.to_id = b.id
   JOIN memories m ON m.id = e.from_id AND (:incl OR {_LIVE})
   WHERE b.depth < :d AND e.deleted_at IS NULL
     AND e.relation IN (SELECT value FROM json_each(:rels))
     AND (:dir <> 'out' OR e.relation IN (SELECT value FROM json_each(:sym)))
)
SELECT id, MIN(depth) AS depth FROM bfs GROUP BY id ORDER BY depth, id LIMIT :limit
"""

_LINEAGE_SQL: Final = """
WITH RECURSIVE walk(id, depth, relation) AS (
  SELECT :start, 0, ''
  UNION
  SELECT e.to_id, w.depth + 1, e.relation FROM walk w JOIN edges e ON e.from_id = w.id
   WHERE w.depth < :d AND e.deleted_at IS NULL AND e.relation = :forward
  UNION
  SELECT e.from_id, w.depth + 1, e.relation FROM walk w JOIN edges e ON e.to_id = w.id
   WHERE w.depth < :d AND e.deleted_at IS NULL AND e.relation = :backward
),
best AS (SELECT id, MIN(depth) AS depth FROM walk GROUP BY id)
SELECT b.id, b.depth, MIN(w.relation) FROM best b JOIN walk w ON w.id = b.id AND w.depth = b.depth
WHERE b.id <> :start GROUP BY b.id, b.depth ORDER BY b.depth, b.id
"""


def _memory(row: sqlite3.Row | tuple[Any, ...]) -> StoredMemory:
    return StoredMemory(
        id=row[0],
        type=row[1],
        subcategory=row[2],
        schema_version=row[3],
        namespace=row[4],
        version=row[5],
        heads=tuple(json.loads(row[6])),
        content_hash=row[7],
        vector_clock=json.loads(row[8]),
        data=None if row[9] is None else json.loads(row[9]),
        text=row[10],
        summary=row[11],
        tags=tuple(json.loads(row[12])),
        created_at=row[13],
        updated_at=row[14],
        deleted_at=row[15],
        expires_at=row[16],
        conflicted=bool(row[17]),
        purged=bool(row[18]),
    )


def _version(row: tuple[Any, ...]) -> StoredVersion:
    return StoredVersion(
        memory_id=row[0],
        version=row[1],
        parents=tuple(json.loads(row[2])),
        content_hash=row[3],
        reason=row[4],
        actor=row[5],
        vector_clock=json.loads(row[6]),
        is_head=bool(row[7]),
        created_at=row[8],
    )


def _edge(row: tuple[Any, ...]) -> StoredEdge:
    return StoredEdge(
        from_id=row[0],
        to_id=row[1],
        relation=row[2],
        weight=row[3],
        metadata=json.loads(row[4]),
        created_at=row[5],
        created_by=row[6],
        deleted_at=row[7],
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _memory_params(memory: StoredMemory) -> dict[str, Any]:
    return {
        "id": memory.id,
        "type": memory.type,
        "subcategory": memory.subcategory,
        "schema_version": memory.schema_version,
        "namespace": memory.namespace,
        "version": memory.version,
        "heads": _dumps(list(memory.heads)),
        "content_hash": memory.content_hash,
        "vector_clock": _dumps(memory.vector_clock),
        "data": None if memory.data is None else _dumps(memory.data),
        "explicit_text": memory.text,
        "text": "" if memory.purged else indexed_text(memory.data, memory.text, memory.summary),
        "summary": memory.summary,
        "tags": _dumps(list(memory.tags)),
        "tags_text": " ".join(memory.tags),
        "conflicted": int(memory.conflicted),
        "purged": int(memory.purged),
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
        "deleted_at": memory.deleted_at,
        "expires_at": memory.expires_at,
    }


def _version_params(version: StoredVersion) -> tuple[Any, ...]:
    return (
        version.memory_id,
        version.version,
        _dumps(list(version.parents)),
        version.content_hash,
        version.reason,
        version.actor,
        _dumps(version.vector_clock),
        int(version.is_head),
        version.created_at,
    )


_INSERT_MEMORY: Final = (
    "INSERT INTO memories (id, type, subcategory, schema_version, namespace, version, heads, "
    "content_hash, vector_clock, data, explicit_text, text, summary, tags, tags_text, conflicted, "
    "purged, created_at, updated_at, deleted_at, expires_at) VALUES (:id, :type, :subcategory, "
    ":schema_version, :namespace, :version, :heads, :content_hash, :vector_clock, :data, "
    ":explicit_text, :text, :summary, :tags, :tags_text, :conflicted, :purged, :created_at, "
    ":updated_at, :deleted_at, :expires_at)"
)
_UPDATE_MEMORY: Final = (
    "UPDATE memories SET version = :version, heads = :heads, content_hash = :content_hash, "
    "vector_clock = :vector_clock, data = :data, explicit_text = :explicit_text, text = :text, "
    "summary = :summary, tags = :tags, tags_text = :tags_text, conflicted = :conflicted, "
    "purged = :purged, updated_at = :updated_at, deleted_at = :deleted_at, "
    "expires_at = :expires_at WHERE id = :id"
)
_UPSERT_CONTENT: Final = (
    "INSERT INTO contents (hash, body, size, refs) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (hash) DO UPDATE SET refs = refs + 1"
)
_INSERT_VERSION: Final = (
    f"INSERT INTO versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


class _Connection:
    """One sqlite3 connection, used by one worker thread at a time."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.raw = connection
        self._limiter = anyio.CapacityLimiter(1)

    async def run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(function, self.raw, limiter=self._limiter)

    async def all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return await self.run(lambda c: c.execute(sql, params).fetchall())

    async def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        return await self.run(lambda c: c.execute(sql, params).fetchone())


class _SqliteTx:
    """The writer connection inside ``BEGIN IMMEDIATE``."""

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def get(self, memory_id: str) -> StoredMemory | None:
        row = await self._c.one(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE id = ?", (memory_id,)
        )
        return None if row is None else _memory(row)

    async def heads(self, memory_id: str) -> list[StoredVersion]:
        rows = await self._c.all(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE memory_id = ? AND is_head = 1 "
            "ORDER BY version",
            (memory_id,),
        )
        return [_version(row) for row in rows]

    async def get_version(self, memory_id: str, version: int) -> StoredVersion | None:
        row = await self._c.one(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE memory_id = ? AND version = ?",
            (memory_id, version),
        )
        return None if row is None else _version(row)

    async def content(self, content_hash: str) -> str | None:
        row = await self._c.one("SELECT body FROM contents WHERE hash = ?", (content_hash,))
        return None if row is None else str(row[0])

    async def find_by_hash(
        self, namespace: str, type_name: str, content_hash: str, now: str
    ) -> str | None:
        return await _find_by_hash(self._c, namespace, type_name, content_hash, now)

    async def create(
        self, memory: StoredMemory, versions: Sequence[StoredVersion], contents: Sequence[Content]
    ) -> None:
        bodies = {content.hash: content.body for content in contents}

        def write(c: sqlite3.Connection) -> None:
            for version in versions:
                body = bodies[version.content_hash]
                c.execute(_UPSERT_CONTENT, (version.content_hash, body, len(body.encode())))
            c.execute(_INSERT_MEMORY, _memory_params(memory))
            c.executemany(_INSERT_VERSION, [_version_params(v) for v in versions])

        await self._c.run(write)

    async def append_version(
        self, memory: StoredMemory, version: StoredVersion, content: Content
    ) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute(_UPSERT_CONTENT, (content.hash, content.body, len(content.body.encode())))
            for parent in version.parents:
                c.execute(
                    "UPDATE versions SET is_head = 0 WHERE memory_id = ? AND version = ?",
                    (version.memory_id, parent),
                )
            c.execute(_INSERT_VERSION, _version_params(version))
            cursor = c.execute(_UPDATE_MEMORY, _memory_params(memory))
            assert cursor.rowcount == 1, memory.id

        await self._c.run(write)

    async def purge(self, memory_id: str) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE contents SET refs = refs - (SELECT COUNT(*) FROM versions v "
                "WHERE v.memory_id = ? AND v.content_hash = contents.hash) "
                "WHERE hash IN (SELECT content_hash FROM versions WHERE memory_id = ?)",
                (memory_id, memory_id),
            )
            c.execute("DELETE FROM contents WHERE refs <= 0")
            c.execute(
                "UPDATE memories SET data = NULL, explicit_text = NULL, text = '', summary = NULL, "
                "tags = '[]', tags_text = '', purged = 1 WHERE id = ?",
                (memory_id,),
            )

        await self._c.run(write)

    async def get_edge(self, from_id: str, to_id: str, relation: str) -> StoredEdge | None:
        row = await self._c.one(
            f"SELECT {_EDGE_COLUMNS} FROM edges WHERE from_id = ? AND relation = ? AND to_id = ?",
            (from_id, relation, to_id),
        )
        return None if row is None else _edge(row)

    async def put_edge(self, edge: StoredEdge) -> None:
        await self._c.run(
            lambda c: c.execute(
                f"INSERT INTO edges ({_EDGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (from_id, relation, to_id) DO UPDATE SET weight = excluded.weight, "
                "metadata = excluded.metadata, deleted_at = excluded.deleted_at",
                (
                    edge.from_id,
                    edge.to_id,
                    edge.relation,
                    edge.weight,
                    _dumps(edge.metadata),
                    edge.created_at,
                    edge.created_by,
                    edge.deleted_at,
                ),
            )
        )

    async def unlink(self, pairs: Sequence[tuple[str, str, str]], now: str) -> int:
        def write(c: sqlite3.Connection) -> int:
            removed = 0
            for from_id, to_id, relation in pairs:
                removed += c.execute(
                    "UPDATE edges SET deleted_at = ? WHERE from_id = ? AND to_id = ? "
                    "AND relation = ? AND deleted_at IS NULL",
                    (now, from_id, to_id, relation),
                ).rowcount
            return removed

        return await self._c.run(write)

    async def idempotency_get(self, key: str) -> tuple[str, str] | None:
        row = await self._c.one(
            "SELECT request_hash, result FROM idempotency WHERE key = ?", (key,)
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def idempotency_put(self, key: str, request_hash: str, result: str, now: str) -> None:
        await self._c.run(
            lambda c: c.execute(
                "INSERT INTO idempotency (key, request_hash, result, created_at) VALUES (?,?,?,?)",
                (key, request_hash, result, now),
            )
        )


async def _find_by_hash(
    connection: _Connection, namespace: str, type_name: str, content_hash: str, now: str
) -> str | None:
    row = await connection.one(
        f"SELECT m.id FROM memories m WHERE m.namespace = :ns AND m.content_hash = :hash "
        f"AND m.type = :type AND {_LIVE} ORDER BY m.id LIMIT 1",
        {"ns": namespace, "hash": content_hash, "type": type_name, "now": now},
    )
    return None if row is None else str(row[0])


def _filter_sql(filters: Filters, params: dict[str, Any]) -> str:
    """WHERE conditions on alias ``m`` for the shared read filters."""
    conditions = ["1"]
    params["now"] = filters.now
    if not filters.include_deleted:
        conditions.append(_LIVE)
    if filters.types:
        params["types"] = _dumps(list(filters.types))
        conditions.append("m.type IN (SELECT value FROM json_each(:types))")
    if filters.namespace is not None:
        params["namespace"] = filters.namespace
        conditions.append("m.namespace = :namespace")
    if filters.tags:
        params["tags"] = _dumps(list(filters.tags))
        conditions.append(
            "EXISTS (SELECT 1 FROM json_each(m.tags) t WHERE t.value IN "
            "(SELECT value FROM json_each(:tags)))"
        )
    if filters.created_after is not None:
        params["created_after"] = filters.created_after
        conditions.append("m.created_at > :created_after")
    if filters.updated_after is not None:
        params["updated_after"] = filters.updated_after
        conditions.append("m.updated_at > :updated_after")
    return " AND ".join(conditions)


def _fts_query(terms: Sequence[str], match_all: bool) -> str:
    """Each token double-quoted (inner quotes doubled): user text is never FTS5 syntax."""
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    return (" " if match_all else " OR ").join(quoted)


class SqliteStore:
    """The SQLite ``MemoryStore``."""

    backend = "sqlite"

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        assert synchronous in ("NORMAL", "FULL"), synchronous
        self._path = path
        self._synchronous = synchronous
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None
        self._write_lock = anyio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    async def init_schema(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        raw = await anyio.to_thread.run_sync(_connect, self._path, self._synchronous)
        self._writer = _Connection(raw)
        await self._writer.run(_migrate)
        self._reader = _Connection(
            await anyio.to_thread.run_sync(_connect, self._path, self._synchronous)
        )

    @property
    def _r(self) -> _Connection:
        assert self._reader is not None, "init_schema first"
        return self._reader

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_SqliteTx]:
        writer = self._writer
        assert writer is not None, "init_schema first"
        async with self._write_lock:
            await writer.run(lambda c: c.execute("BEGIN IMMEDIATE"))
            try:
                yield _SqliteTx(writer)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await writer.run(lambda c: c.execute("ROLLBACK"))
                raise
            with anyio.CancelScope(shield=True):
                await writer.run(lambda c: c.execute("COMMIT"))

    async def probe(self) -> None:
        await self._r.one("SELECT 1")

    async def meta_get(self, key: str) -> str | None:
        row = await self._r.one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def meta_set(self, key: str, value: str) -> None:
        async with self.write() as tx:
            await tx._c.run(
                lambda c: c.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
            )

    async def get(self, memory_id: str) -> StoredMemory | None:
        row = await self._r.one(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE id = ?", (memory_id,)
        )
        return None if row is None else _memory(row)

    async def get_many(self, ids: Sequence[str]) -> list[StoredMemory]:
        rows = await self._r.all(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE id IN "
            "(SELECT value FROM json_each(?)) ORDER BY id",
            (_dumps(list(ids)),),
        )
        return [_memory(row) for row in rows]

    async def get_version(self, memory_id: str, version: int) -> StoredVersion | None:
        row = await self._r.one(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE memory_id = ? AND version = ?",
            (memory_id, version),
        )
        return None if row is None else _version(row)

    async def content(self, content_hash: str) -> str | None:
        row = await self._r.one("SELECT body FROM contents WHERE hash = ?", (content_hash,))
        return None if row is None else str(row[0])

    async def history(self, memory_id: str, limit: int) -> list[StoredVersion]:
        rows = await self._r.all(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE memory_id = ? "
            "ORDER BY version DESC LIMIT ?",
            (memory_id, limit),
        )
        return [_version(row) for row in rows]

    async def find_by_hash(
        self, namespace: str, type_name: str, content_hash: str, now: str
    ) -> str | None:
        return await _find_by_hash(self._r, namespace, type_name, content_hash, now)

    async def list_page(
        self, filters: Filters, order: ListOrder, limit: int, after: tuple[str, str] | None
    ) -> list[StoredMemory]:
        params: dict[str, Any] = {"limit": limit}
        where = _filter_sql(filters, params)
        column = "m.updated_at" if order.startswith("updated") else "m.created_at"
        descending = order.endswith("desc")
        if after is not None:
            params["after_value"], params["after_id"] = after
            operator = "<" if descending else ">"
            where += f" AND ({column}, m.id) {operator} (:after_value, :after_id)"
        direction = "DESC" if descending else "ASC"
        rows = await self._r.all(
            f"SELECT {_M_COLUMNS} FROM memories m WHERE {where} "
            f"ORDER BY {column} {direction}, m.id {direction} LIMIT :limit",
            params,
        )
        return [_memory(row) for row in rows]

    async def search_fulltext(
        self, terms: Sequence[str], match_all: bool, filters: Filters, limit: int, offset: int
    ) -> list[tuple[str, float]]:
        params: dict[str, Any] = {
            "query": _fts_query(terms, match_all),
            "limit": limit,
            "offset": offset,
        }
        where = _filter_sql(filters, params)
        rows = await self._r.all(
            "SELECT m.id, bm25(memories_fts, 10.0, 5.0, 2.0) AS rank FROM memories_fts "
            "JOIN memories m ON m.rowid = memories_fts.rowid "
            f"WHERE memories_fts MATCH :query AND {where} ORDER BY rank, m.id "
            "LIMIT :limit OFFSET :offset",
            params,
        )
        return [(str(row[0]), -float(row[1])) for row in rows]

    async def expand(
        self,
        frontier: Sequence[str],
        relations: Sequence[str],
        direction: Direction,
        include_deleted: bool,
        now: str,
    ) -> list[tuple[str, str, str]]:
        params = {
            "frontier": _dumps(list(frontier)),
            "rels": _dumps(list(relations)),
            "sym": _dumps(sorted(SYMMETRIC)),
            "dir": direction,
            "incl": int(include_deleted),
            "now": now,
        }
        rows = await self._r.all(
            f"""SELECT e.from_id, e.relation, e.to_id FROM edges e
             JOIN memories m ON m.id = e.to_id AND (:incl OR {_LIVE})
             WHERE e.from_id IN (SELECT value FROM json_each(:frontier)) AND e.deleted_at IS NULL
               AND e.relation IN (SELECT value FROM json_each(:rels))
               AND (:dir <> 'in' OR e.relation IN (SELECT value FROM json_each(:sym)))
            UNION
            SELECT e.to_id, e.relation, e.from_id FROM edges e
             JOIN memories m ON m.id = e.from_id AND (:incl OR {_LIVE})
             WHERE e.to_id IN (SELECT value FROM json_each(:frontier)) AND e.deleted_at IS NULL
               AND e.relation IN (SELECT value FROM json_each(:rels))
               AND (:dir <> 'out' OR e.relation IN (SELECT value FROM json_each(:sym)))""",
            params,
        )
        return [(str(row[0]), str(row[1]), str(row[2])) for row in rows]

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
        params = {
            "start": start,
            "d": depth,
            "rels": _dumps(list(relations)),
            "sym": _dumps(sorted(SYMMETRIC)),
            "dir": direction,
            "incl": int(include_deleted),
            "now": now,
            "limit": nodes_max + 1,
        }
        rows = await self._r.all(_NEIGHBORS_SQL, params)
        return [(str(row[0]), int(row[1])) for row in rows]

    async def lineage(
        self, memory_id: str, ancestors: bool, depth_max: int
    ) -> list[tuple[str, int, str]]:
        forward, backward = (
            ("derived_from", "evolved_into") if ancestors else ("evolved_into", "derived_from")
        )
        rows = await self._r.all(
            _LINEAGE_SQL,
            {"start": memory_id, "d": depth_max, "forward": forward, "backward": backward},
        )
        return [(str(row[0]), int(row[1]), str(row[2])) for row in rows]

    async def edges_among(self, ids: Sequence[str], relations: Sequence[str]) -> list[StoredEdge]:
        # Drive the join from the id list through the key prefix from_id; the unary + keeps the
        # planner from multiplying the two IN lists into key probes (ids x relations x ids).
        columns = ", ".join(f"e.{name.strip()}" for name in _EDGE_COLUMNS.split(","))
        rows = await self._r.all(
            f"SELECT {columns} FROM json_each(:ids) j JOIN edges e ON e.from_id = j.value "
            "WHERE e.deleted_at IS NULL AND +e.to_id IN (SELECT value FROM json_each(:ids)) "
            "AND +e.relation IN (SELECT value FROM json_each(:rels)) "
            "ORDER BY e.from_id, e.to_id, e.relation",
            {"ids": _dumps(sorted(set(ids))), "rels": _dumps(list(relations))},
        )
        return [_edge(row) for row in rows]

    async def conflicted(
        self, namespace: str | None, memory_id: str | None, limit: int
    ) -> list[StoredMemory]:
        rows = await self._r.all(
            f"SELECT {_M_COLUMNS} FROM memories m WHERE m.conflicted = 1 AND m.deleted_at IS NULL "
            "AND (:ns IS NULL OR m.namespace = :ns) AND (:id IS NULL OR m.id = :id) "
            "ORDER BY m.id LIMIT :limit",
            {"ns": namespace, "id": memory_id, "limit": limit},
        )
        return [_memory(row) for row in rows]

    async def contradictions(
        self, namespace: str | None, memory_id: str | None, limit: int
    ) -> list[StoredEdge]:
        rows = await self._r.all(
            f"SELECT {', '.join('e.' + c.strip() for c in _EDGE_COLUMNS.split(','))} FROM edges e "
            "JOIN memories a ON a.id = e.from_id WHERE e.relation = 'contradicts' "
            "AND e.deleted_at IS NULL AND (:ns IS NULL OR a.namespace = :ns) "
            "AND (:id IS NULL OR e.from_id = :id OR e.to_id = :id) "
            "ORDER BY e.from_id, e.to_id LIMIT :limit",
            {"ns": namespace, "id": memory_id, "limit": limit},
        )
        return [_edge(row) for row in rows]

    async def due_for_expiry(self, now: str, limit: int) -> list[str]:
        rows = await self._r.all(
            "SELECT id FROM memories WHERE expires_at IS NOT NULL AND deleted_at IS NULL "
            "AND expires_at <= ? ORDER BY expires_at, id LIMIT ?",
            (now, limit),
        )
        return [str(row[0]) for row in rows]

    async def stats(self, namespace: str | None, now: str) -> dict[str, Any]:
        params = {"ns": namespace, "now": now}
        scope = "(:ns IS NULL OR m.namespace = :ns)"

        def query(c: sqlite3.Connection) -> dict[str, Any]:
            def grouped(column: str) -> dict[str, int]:
                rows = c.execute(
                    f"SELECT {column}, COUNT(*) FROM memories m WHERE {scope} AND {_LIVE} "
                    f"GROUP BY {column}",
                    params,
                ).fetchall()
                return {str(row[0]): int(row[1]) for row in rows}

            tags = c.execute(
                f"SELECT t.value, COUNT(*) FROM memories m, json_each(m.tags) t "
                f"WHERE {scope} AND {_LIVE} GROUP BY t.value",
                params,
            ).fetchall()
            deleted = c.execute(
                f"SELECT COUNT(*) FROM memories m WHERE {scope} AND NOT {_LIVE}", params
            ).fetchone()
            edges = c.execute("SELECT COUNT(*) FROM edges WHERE deleted_at IS NULL").fetchone()
            contents = c.execute("SELECT COUNT(*) FROM contents").fetchone()
            return {
                "live": sum(grouped("m.type").values()),
                "by_type": grouped("m.type"),
                "by_namespace": grouped("m.namespace"),
                "by_tag": {str(row[0]): int(row[1]) for row in tags},
                "deleted": int(deleted[0]),
                "edges": int(edges[0]),
                "contents": int(contents[0]),
            }

        return await self._r.run(query)

    async def dump(self) -> dict[str, Any]:
        def query(c: sqlite3.Connection) -> dict[str, Any]:
            records = c.execute(
                "SELECT id, version, heads, content_hash, vector_clock, deleted_at FROM memories "
                "ORDER BY id"
            ).fetchall()
            versions = c.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions ORDER BY memory_id, version"
            ).fetchall()
            edges = c.execute(
                f"SELECT {_EDGE_COLUMNS} FROM edges WHERE deleted_at IS NULL "
                "ORDER BY from_id, to_id, relation"
            ).fetchall()
            return {
                "records": [
                    [r[0], r[1], json.loads(r[2]), r[3], json.loads(r[4]), r[5]] for r in records
                ],
                "versions": [_version(row) for row in versions],
                "edges": [_edge(row) for row in edges],
            }

        return await self._r.run(query)

    async def reindex_fulltext(self) -> int:
        async with self.write() as tx:
            return await tx._c.run(_rebuild_fts)

    async def check_integrity(self) -> tuple[str, bool]:
        """``PRAGMA integrity_check`` and the FTS5 ``integrity-check`` (test 28)."""

        def check(c: sqlite3.Connection) -> tuple[str, bool]:
            pragma = str(c.execute("PRAGMA integrity_check").fetchone()[0])
            try:
                c.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
            except sqlite3.DatabaseError:
                return pragma, False
            return pragma, True

        async with self.write() as tx:
            return await tx._c.run(check)

    async def close(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None:
                await connection.run(lambda c: c.close())
        self._reader = self._writer = None


def _rebuild_fts(c: sqlite3.Connection) -> int:
    c.execute("INSERT INTO memories_fts(memories_fts) VALUES ('rebuild')")
    return int(c.execute("SELECT COUNT(*) FROM memories").fetchone()[0])


def _migrate(c: sqlite3.Connection) -> None:
    """Apply the numbered migrations not yet recorded, in one transaction."""
    c.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    applied = {row[0] for row in c.execute("SELECT version FROM schema_migrations")}
    c.execute("BEGIN IMMEDIATE")
    try:
        for number, script in enumerate(MIGRATIONS, start=1):
            if number in applied:
                continue
            for statement in _statements(script):
                c.execute(statement)
            c.execute("INSERT INTO schema_migrations (version) VALUES (?)", (number,))
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split a migration into statements (trigger bodies hold semicolons)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    assert not buffer.strip(), buffer
    return statements


assert set(SYMMETRIC) <= set(RELATIONS)
