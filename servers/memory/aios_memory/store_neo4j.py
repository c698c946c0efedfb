"""The Neo4j backend (spec/memory.md section 3.1) through the official async ``neo4j`` driver.

Queries stay within the Cypher subset that Neo4j 5 and ArcadeDB's Bolt plugin both run
(notes/graph-backend.md section 3): the database is always named, relationship types are
formatted only from the validated relation enum, and the one non-portable step, creating the
full-text index, sits in :meth:`Neo4jStore.init_schema` with a Neo4j branch (Cypher DDL) and an
ArcadeDB branch (the same-named index created in SQL over ArcadeDB's HTTP API).

BFS runs level by level through :meth:`expand` (a single ``[*1..d]`` pattern enumerates paths
and explodes on hubs); lineage reuses the same frontier loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, LiteralString

import anyio
import httpx2
from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncTransaction
from neo4j.exceptions import DriverError, ServiceUnavailable

from aios_memory.config import MemorySettings
from aios_memory.errors import backend_unavailable
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
from aios_memory.traversal import breadth_first

__all__ = ["Neo4jStore"]

logger = logging.getLogger(__name__)

_CONSTRAINTS: Final[tuple[LiteralString, ...]] = (
    "CREATE CONSTRAINT memory_id IF NOT EXISTS FOR (m:Memory) REQUIRE m.id IS UNIQUE",
    "CREATE CONSTRAINT version_key IF NOT EXISTS FOR (v:Version) "
    "REQUIRE (v.memory_id, v.version) IS UNIQUE",
    "CREATE CONSTRAINT content_hash IF NOT EXISTS FOR (c:Content) REQUIRE c.hash IS UNIQUE",
    "CREATE CONSTRAINT idempotency_key IF NOT EXISTS FOR (i:Idempotency) REQUIRE i.key IS UNIQUE",
    "CREATE CONSTRAINT meta_key IF NOT EXISTS FOR (k:Meta) REQUIRE k.key IS UNIQUE",
    "CREATE INDEX memory_ns_type IF NOT EXISTS FOR (m:Memory) "
    "ON (m.namespace, m.type, m.updated_at)",
    "CREATE INDEX memory_dedup IF NOT EXISTS FOR (m:Memory) ON (m.namespace, m.content_hash)",
    "CREATE INDEX memory_expires IF NOT EXISTS FOR (m:Memory) ON (m.expires_at)",
)
_FULLTEXT_CYPHER: Final = (
    "CREATE FULLTEXT INDEX memory_text IF NOT EXISTS FOR (m:Memory) "
    "ON EACH [m.text, m.summary, m.tags_text] "
    "OPTIONS {indexConfig: {`fulltext.analyzer`: 'english'}}"
)
# ArcadeDB rejects full-text DDL in Cypher; the same-named index made in SQL serves
# db.index.fulltext.queryNodes unchanged. Properties must be declared before indexing.
_FULLTEXT_ARCADEDB_SQL: Final = (
    "CREATE VERTEX TYPE Memory IF NOT EXISTS",
    "CREATE PROPERTY Memory.text IF NOT EXISTS STRING",
    "CREATE PROPERTY Memory.summary IF NOT EXISTS STRING",
    "CREATE PROPERTY Memory.tags_text IF NOT EXISTS STRING",
    "CREATE INDEX memory_text IF NOT EXISTS ON Memory (text, summary, tags_text) FULL_TEXT",
)
_LIVE: Final = "({v}.deleted_at IS NULL AND ({v}.expires_at IS NULL OR {v}.expires_at > $now))"
_FIELD_BOOSTS: Final = (("text", 10), ("summary", 5), ("tags_text", 2))


def _cypher(text: str) -> LiteralString:
    """A query assembled from constant fragments and validated enum names only (relationship
    types and variable-length bounds cannot be parameters)."""
    return text


def _rel(relation: str) -> str:
    """The relationship type of a validated relation (never user text)."""
    assert relation in RELATIONS, relation
    return relation.upper()


def _live(variable: str) -> str:
    return _LIVE.format(v=variable)


def _memory(node: dict[str, Any]) -> StoredMemory:
    data = node.get("data")
    return StoredMemory(
        id=node["id"],
        type=node["type"],
        subcategory=node["subcategory"],
        schema_version=int(node["schema_version"]),
        namespace=node["namespace"],
        version=int(node["version"]),
        heads=tuple(int(h) for h in node["heads"]),
        content_hash=node["content_hash"],
        vector_clock=json.loads(node["vector_clock"]),
        data=None if data is None else json.loads(data),
        text=node.get("explicit_text"),
        summary=node.get("summary"),
        tags=tuple(node.get("tags") or ()),
        created_at=node["created_at"],
        updated_at=node["updated_at"],
        deleted_at=node.get("deleted_at"),
        expires_at=node.get("expires_at"),
        conflicted=bool(node.get("conflicted", False)),
        purged=bool(node.get("purged", False)),
    )


def _version(node: dict[str, Any]) -> StoredVersion:
    return StoredVersion(
        memory_id=node["memory_id"],
        version=int(node["version"]),
        parents=tuple(int(p) for p in node["parents"]),
        content_hash=node["content_hash"],
        reason=node["reason"],
        actor=node["actor"],
        vector_clock=json.loads(node["vector_clock"]),
        is_head=bool(node["is_head"]),
        created_at=node["created_at"],
    )


def _edge(from_id: str, to_id: str, relation: str, props: dict[str, Any]) -> StoredEdge:
    return StoredEdge(
        from_id=from_id,
        to_id=to_id,
        relation=relation.lower(),
        weight=float(props["weight"]),
        metadata=json.loads(props.get("metadata") or "{}"),
        created_at=props["created_at"],
        created_by=props["created_by"],
        deleted_at=props.get("deleted_at"),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _memory_props(memory: StoredMemory) -> dict[str, Any]:
    return {
        "id": memory.id,
        "type": memory.type,
        "subcategory": memory.subcategory,
        "schema_version": memory.schema_version,
        "namespace": memory.namespace,
        "version": memory.version,
        "heads": list(memory.heads),
        "content_hash": memory.content_hash,
        "vector_clock": _dumps(memory.vector_clock),
        "data": None if memory.data is None else _dumps(memory.data),
        "explicit_text": memory.text,
        "text": "" if memory.purged else indexed_text(memory.data, memory.text, memory.summary),
        "summary": memory.summary,
        "tags": list(memory.tags),
        "tags_text": " ".join(memory.tags),
        "conflicted": memory.conflicted,
        "purged": memory.purged,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
        "deleted_at": memory.deleted_at,
        "expires_at": memory.expires_at,
    }


def _version_props(version: StoredVersion) -> dict[str, Any]:
    return {
        "memory_id": version.memory_id,
        "version": version.version,
        "parents": list(version.parents),
        "content_hash": version.content_hash,
        "reason": version.reason,
        "actor": version.actor,
        "vector_clock": _dumps(version.vector_clock),
        "is_head": version.is_head,
        "created_at": version.created_at,
    }


def _stem(term: str) -> str | None:
    """A light English suffix strip. ArcadeDB's full-text analyzer does not stem (Neo4j's
    english analyzer does), so each term also matches ``stem*``: "indexes" finds "index" on
    both servers, as FTS5's porter tokenizer does on SQLite."""
    for suffix, replacement in (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ed", "")):
        if term.endswith(suffix) and len(term) - len(suffix) + len(replacement) >= 3:
            stem = term[: len(term) - len(suffix)] + replacement
            return stem if stem.isalnum() else None
    return None


def _lucene(terms: Sequence[str], match_all: bool) -> str:
    """Quoted terms (tokens are alphanumeric, so nothing needs escaping) with the field boosts
    ``text^10 summary^5 tags_text^2``; never user syntax."""
    clauses = []
    for term in terms:
        assert term.isalnum(), term
        parts = [f'{field}:"{term}"^{boost}' for field, boost in _FIELD_BOOSTS]
        stem = _stem(term)
        if stem is not None:
            parts += [f"{field}:{stem}*^{boost}" for field, boost in _FIELD_BOOSTS]
        clauses.append("(" + " OR ".join(parts) + ")")
    return (" AND " if match_all else " OR ").join(clauses)


def _filter_cypher(filters: Filters, params: dict[str, Any], variable: str = "m") -> str:
    conditions = ["true"]
    params["now"] = filters.now
    if not filters.include_deleted:
        conditions.append(_live(variable))
    if filters.types:
        params["types"] = list(filters.types)
        conditions.append(f"{variable}.type IN $types")
    if filters.namespace is not None:
        params["namespace"] = filters.namespace
        conditions.append(f"{variable}.namespace = $namespace")
    if filters.tags:
        params["tags"] = list(filters.tags)
        conditions.append(f"any(tag IN {variable}.tags WHERE tag IN $tags)")
    if filters.created_after is not None:
        params["created_after"] = filters.created_after
        conditions.append(f"{variable}.created_at > $created_after")
    if filters.updated_after is not None:
        params["updated_after"] = filters.updated_after
        conditions.append(f"{variable}.updated_at > $updated_after")
    return " AND ".join(conditions)


@asynccontextmanager
async def _mapped(backend: str) -> AsyncIterator[None]:
    """Driver failures that mean "cannot reach the database" become subsystem_unavailable."""
    try:
        yield
    except (ServiceUnavailable, OSError) as error:
        raise backend_unavailable(backend, type(error).__name__) from error
    except DriverError as error:
        raise backend_unavailable(backend, str(error) or type(error).__name__) from error


class _Neo4jTx:
    """One explicit write transaction."""

    def __init__(self, tx: AsyncTransaction, backend: str) -> None:
        self._tx = tx
        self._backend = backend

    async def _rows(self, query: LiteralString, /, **params: Any) -> list[dict[str, Any]]:
        async with _mapped(self._backend):
            result = await self._tx.run(query, params)
            return [record.data() async for record in result]

    async def get(self, memory_id: str) -> StoredMemory | None:
        rows = await self._rows(
            "MATCH (m:Memory {id: $id}) SET m._lock = true REMOVE m._lock RETURN m",
            id=memory_id,
        )
        return _memory(rows[0]["m"]) if rows else None

    async def heads(self, memory_id: str) -> list[StoredVersion]:
        rows = await self._rows(
            "MATCH (v:Version {memory_id: $id}) WHERE v.is_head = true RETURN v ORDER BY v.version",
            id=memory_id,
        )
        return [_version(row["v"]) for row in rows]

    async def get_version(self, memory_id: str, version: int) -> StoredVersion | None:
        rows = await self._rows(
            "MATCH (v:Version {memory_id: $id, version: $version}) RETURN v",
            id=memory_id,
            version=version,
        )
        return _version(rows[0]["v"]) if rows else None

    async def content(self, content_hash: str) -> str | None:
        rows = await self._rows(
            "MATCH (c:Content {hash: $hash}) RETURN c.body AS body", hash=content_hash
        )
        return str(rows[0]["body"]) if rows else None

    async def find_by_hash(
        self, namespace: str, type_name: str, content_hash: str, now: str
    ) -> str | None:
        rows = await self._rows(
            "MATCH (m:Memory {namespace: $ns, content_hash: $hash}) WHERE m.type = $type AND "
            + _live("m")
            + " RETURN m.id AS id ORDER BY id LIMIT 1",
            ns=namespace,
            hash=content_hash,
            type=type_name,
            now=now,
        )
        return str(rows[0]["id"]) if rows else None

    async def _add_version(self, version: StoredVersion, body: str) -> None:
        await self._rows(
            "MERGE (c:Content {hash: $hash}) ON CREATE SET c.body = $body, c.size = $size, "
            "c.refs = 0 SET c.refs = c.refs + 1 "
            "WITH c MATCH (m:Memory {id: $id}) "
            "CREATE (m)-[:HAS_VERSION]->(v:Version)-[:HAS_CONTENT]->(c) SET v = $props "
            "WITH v OPTIONAL MATCH (p:Version {memory_id: $id}) WHERE p.version IN $parents "
            "FOREACH (x IN CASE WHEN p IS NULL THEN [] ELSE [p] END | "
            "SET x.is_head = false CREATE (v)-[:PARENT]->(x))",
            hash=version.content_hash,
            body=body,
            size=len(body.encode()),
            id=version.memory_id,
            props=_version_props(version),
            parents=list(version.parents),
        )

    async def create(
        self, memory: StoredMemory, versions: Sequence[StoredVersion], contents: Sequence[Content]
    ) -> None:
        bodies = {content.hash: content.body for content in contents}
        props = {k: v for k, v in _memory_props(memory).items() if v is not None}
        await self._rows("CREATE (m:Memory) SET m = $props", props=props)
        for version in sorted(versions, key=lambda v: v.version):
            await self._add_version(version, bodies[version.content_hash])

    async def append_version(
        self, memory: StoredMemory, version: StoredVersion, content: Content
    ) -> None:
        await self._add_version(version, content.body)
        props = _memory_props(memory)
        props.pop("id")
        props.pop("created_at")
        rows = await self._rows(
            "MATCH (m:Memory {id: $id}) SET m += $props RETURN count(m) AS n",
            id=memory.id,
            props=props,
        )
        assert rows[0]["n"] == 1, memory.id

    async def purge(self, memory_id: str) -> None:
        await self._rows(
            "MATCH (v:Version {memory_id: $id})-[:HAS_CONTENT]->(c:Content) "
            "WITH c, count(v) AS uses SET c.refs = c.refs - uses",
            id=memory_id,
        )
        await self._rows("MATCH (c:Content) WHERE c.refs <= 0 DETACH DELETE c")
        await self._rows(
            "MATCH (m:Memory {id: $id}) SET m.data = null, m.explicit_text = null, m.text = '', "
            "m.summary = null, m.tags = [], m.tags_text = '', m.purged = true",
            id=memory_id,
        )

    async def get_edge(self, from_id: str, to_id: str, relation: str) -> StoredEdge | None:
        query = _cypher(
            f"MATCH (:Memory {{id: $from}})-[r:{_rel(relation)}]->(:Memory {{id: $to}}) "
            "RETURN properties(r) AS r",
        )
        rows = await self._rows(query, **{"from": from_id, "to": to_id})
        return _edge(from_id, to_id, relation, rows[0]["r"]) if rows else None

    async def put_edge(self, edge: StoredEdge) -> None:
        query = _cypher(
            "MATCH (a:Memory {id: $from}), (b:Memory {id: $to}) "
            f"MERGE (a)-[r:{_rel(edge.relation)}]->(b) "
            "ON CREATE SET r.created_at = $created_at, r.created_by = $created_by "
            "SET r.weight = $weight, r.metadata = $metadata, r.deleted_at = null",
        )
        await self._rows(
            query,
            **{
                "from": edge.from_id,
                "to": edge.to_id,
                "created_at": edge.created_at,
                "created_by": edge.created_by,
                "weight": edge.weight,
                "metadata": _dumps(edge.metadata),
            },
        )

    async def unlink(self, pairs: Sequence[tuple[str, str, str]], now: str) -> int:
        removed = 0
        for from_id, to_id, relation in pairs:
            query = _cypher(
                f"MATCH (:Memory {{id: $from}})-[r:{_rel(relation)}]->(:Memory {{id: $to}}) "
                "WHERE r.deleted_at IS NULL SET r.deleted_at = $now RETURN count(r) AS n",
            )
            rows = await self._rows(query, **{"from": from_id, "to": to_id, "now": now})
            removed += int(rows[0]["n"]) if rows else 0
        return removed

    async def idempotency_get(self, key: str) -> tuple[str, str] | None:
        rows = await self._rows(
            "MATCH (i:Idempotency {key: $key}) RETURN i.request_hash AS h, i.result AS r", key=key
        )
        return (str(rows[0]["h"]), str(rows[0]["r"])) if rows else None

    async def idempotency_put(self, key: str, request_hash: str, result: str, now: str) -> None:
        await self._rows(
            "CREATE (i:Idempotency {key: $key, request_hash: $h, result: $r, created_at: $now})",
            key=key,
            h=request_hash,
            r=result,
            now=now,
        )


class Neo4jStore:
    """The Neo4j ``MemoryStore``."""

    backend = "neo4j"

    def __init__(
        self,
        url: str,
        auth: tuple[str, str],
        database: str,
        *,
        schema_http_url: str | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._url = url
        self._auth = auth
        self._database = database
        self._schema_http_url = schema_http_url
        self._timeout_s = timeout_s
        self._driver: AsyncDriver | None = None
        self._write_lock = anyio.Lock()

    @classmethod
    def from_settings(cls, settings: MemorySettings) -> Neo4jStore:
        password = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
        return cls(
            settings.neo4j_url,
            (settings.neo4j_user, password),
            settings.neo4j_database,
            schema_http_url=settings.neo4j_schema_http_url,
            timeout_s=settings.limits.backend_timeout_s,
        )

    @property
    def _d(self) -> AsyncDriver:
        if self._driver is None:
            self._driver = AsyncGraphDatabase.driver(
                self._url,
                auth=self._auth,
                connection_timeout=self._timeout_s,
                connection_acquisition_timeout=self._timeout_s,
                max_transaction_retry_time=self._timeout_s,
            )
        return self._driver

    async def _rows(self, query: LiteralString, /, **params: Any) -> list[dict[str, Any]]:
        async with _mapped(self.backend):
            records, _, _ = await self._d.execute_query(
                query, params, database_=self._database, routing_="r"
            )
        return [record.data() for record in records]

    async def init_schema(self) -> None:
        async with _mapped(self.backend):
            info = await self._d.get_server_info()
        agent = info.agent or ""
        if "arcadedb" in agent.lower():
            await self._arcadedb_fulltext()
        for statement in _CONSTRAINTS:
            await self._rows(statement)
        if "arcadedb" not in agent.lower():
            await self._rows(_FULLTEXT_CYPHER)
        logger.info("neo4j.schema_ready", extra={"agent": agent, "database": self._database})

    async def _arcadedb_fulltext(self) -> None:
        if self._schema_http_url is None:
            raise backend_unavailable(
                self.backend,
                "the server is ArcadeDB, which needs neo4j_schema_http_url to create its "
                "full-text index",
            )
        url = f"{self._schema_http_url.rstrip('/')}/api/v1/command/{self._database}"
        async with httpx2.AsyncClient(auth=self._auth, timeout=self._timeout_s * 5) as http:
            for command in _FULLTEXT_ARCADEDB_SQL:
                response = await http.post(url, json={"language": "sql", "command": command})
                if response.status_code != 200:
                    raise backend_unavailable(
                        self.backend, f"ArcadeDB refused {command!r}: {response.status_code}"
                    )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_Neo4jTx]:
        async with self._write_lock, _mapped(self.backend):
            session = self._d.session(database=self._database)
            try:
                tx = await session.begin_transaction()
                try:
                    yield _Neo4jTx(tx, self.backend)
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await tx.rollback()
                    raise
                with anyio.CancelScope(shield=True):
                    await tx.commit()
            finally:
                with anyio.CancelScope(shield=True):
                    await session.close()

    async def probe(self) -> None:
        await self._rows("RETURN 1 AS one")

    async def meta_get(self, key: str) -> str | None:
        rows = await self._rows("MATCH (k:Meta {key: $key}) RETURN k.value AS value", key=key)
        return str(rows[0]["value"]) if rows else None

    async def meta_set(self, key: str, value: str) -> None:
        async with self.write() as tx:
            await tx._rows("MERGE (k:Meta {key: $key}) SET k.value = $value", key=key, value=value)

    async def get(self, memory_id: str) -> StoredMemory | None:
        rows = await self._rows("MATCH (m:Memory {id: $id}) RETURN m", id=memory_id)
        return _memory(rows[0]["m"]) if rows else None

    async def get_many(self, ids: Sequence[str]) -> list[StoredMemory]:
        if not ids:
            return []
        rows = await self._rows(
            "MATCH (m:Memory) WHERE m.id IN $ids RETURN m ORDER BY m.id", ids=list(ids)
        )
        return [_memory(row["m"]) for row in rows]

    async def get_version(self, memory_id: str, version: int) -> StoredVersion | None:
        rows = await self._rows(
            "MATCH (v:Version {memory_id: $id, version: $version}) RETURN v",
            id=memory_id,
            version=version,
        )
        return _version(rows[0]["v"]) if rows else None

    async def content(self, content_hash: str) -> str | None:
        rows = await self._rows(
            "MATCH (c:Content {hash: $hash}) RETURN c.body AS body", hash=content_hash
        )
        return str(rows[0]["body"]) if rows else None

    async def history(self, memory_id: str, limit: int) -> list[StoredVersion]:
        rows = await self._rows(
            "MATCH (v:Version {memory_id: $id}) RETURN v ORDER BY v.version DESC LIMIT $limit",
            id=memory_id,
            limit=limit,
        )
        return [_version(row["v"]) for row in rows]

    async def find_by_hash(
        self, namespace: str, type_name: str, content_hash: str, now: str
    ) -> str | None:
        rows = await self._rows(
            "MATCH (m:Memory {namespace: $ns, content_hash: $hash}) WHERE m.type = $type AND "
            + _live("m")
            + " RETURN m.id AS id ORDER BY id LIMIT 1",
            ns=namespace,
            hash=content_hash,
            type=type_name,
            now=now,
        )
        return str(rows[0]["id"]) if rows else None

    async def list_page(
        self, filters: Filters, order: ListOrder, limit: int, after: tuple[str, str] | None
    ) -> list[StoredMemory]:
        params: dict[str, Any] = {"limit": limit}
        where = _filter_cypher(filters, params)
        column = "m.updated_at" if order.startswith("updated") else "m.created_at"
        descending = order.endswith("desc")
        if after is not None:
            params["after_value"], params["after_id"] = after
            if descending:
                where += (
                    f" AND ({column} < $after_value OR ({column} = $after_value "
                    "AND m.id < $after_id))"
                )
            else:
                where += (
                    f" AND ({column} > $after_value OR ({column} = $after_value "
                    "AND m.id > $after_id))"
                )
        direction = "DESC" if descending else "ASC"
        query = _cypher(
            f"MATCH (m:Memory) WHERE {where} RETURN m "
            f"ORDER BY {column} {direction}, m.id {direction} LIMIT $limit",
        )
        return [_memory(row["m"]) for row in await self._rows(query, **params)]

    async def search_fulltext(
        self, terms: Sequence[str], match_all: bool, filters: Filters, limit: int, offset: int
    ) -> list[tuple[str, float]]:
        params: dict[str, Any] = {
            "query": _lucene(terms, match_all),
            "limit": limit,
            "offset": offset,
        }
        where = _filter_cypher(filters, params, "node")
        query = _cypher(
            "CALL db.index.fulltext.queryNodes('memory_text', $query) YIELD node, score "
            f"WHERE {where} RETURN node.id AS id, score "
            "ORDER BY score DESC, id SKIP $offset LIMIT $limit",
        )
        rows = await self._rows(query, **params)
        return [(str(row["id"]), float(row["score"])) for row in rows]

    async def expand(
        self,
        frontier: Sequence[str],
        relations: Sequence[str],
        direction: Direction,
        include_deleted: bool,
        now: str,
    ) -> list[tuple[str, str, str]]:
        outward = [r for r in relations if direction != "in" or r in SYMMETRIC]
        inward = [r for r in relations if direction != "out" or r in SYMMETRIC]
        found: set[tuple[str, str, str]] = set()
        for chosen, arrow in ((outward, "-[r:{types}]->"), (inward, "<-[r:{types}]-")):
            if not chosen:
                continue
            pattern = arrow.format(types="|".join(_rel(r) for r in sorted(chosen)))
            query = _cypher(
                f"UNWIND $frontier AS fid MATCH (a:Memory {{id: fid}}){pattern}(b:Memory) "
                f"WHERE r.deleted_at IS NULL AND ($incl OR {_live('b')}) "
                "RETURN DISTINCT a.id AS src, type(r) AS rel, b.id AS dst",
            )
            rows = await self._rows(query, frontier=list(frontier), incl=include_deleted, now=now)
            found.update((row["src"], str(row["rel"]).lower(), row["dst"]) for row in rows)
        return sorted(found)

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
        async def expand(frontier: Sequence[str]) -> list[tuple[str, str, str]]:
            return await self.expand(frontier, relations, direction, include_deleted, now)

        return await breadth_first(start, depth, expand, nodes_max)

    async def lineage(
        self, memory_id: str, ancestors: bool, depth_max: int
    ) -> list[tuple[str, int, str]]:
        forward, backward = (
            ("DERIVED_FROM", "EVOLVED_INTO") if ancestors else ("EVOLVED_INTO", "DERIVED_FROM")
        )
        query = _cypher(
            f"UNWIND $frontier AS fid MATCH (a:Memory {{id: fid}})-[r:{forward}]->(b:Memory) "
            "WHERE r.deleted_at IS NULL RETURN a.id AS src, type(r) AS rel, b.id AS dst "
            "UNION UNWIND $frontier AS fid "
            f"MATCH (a:Memory {{id: fid}})<-[r:{backward}]-(b:Memory) "
            "WHERE r.deleted_at IS NULL RETURN a.id AS src, type(r) AS rel, b.id AS dst",
        )
        seen = {memory_id}
        frontier = [memory_id]
        result: list[tuple[str, int, str]] = []
        for level in range(1, depth_max + 1):
            if not frontier:
                break
            rows = await self._rows(query, frontier=frontier)
            best: dict[str, str] = {}
            for row in rows:
                node, relation = row["dst"], str(row["rel"]).lower()
                if node not in seen and (node not in best or relation < best[node]):
                    best[node] = relation
            frontier = sorted(best)
            seen.update(frontier)
            result.extend((node, level, best[node]) for node in frontier)
        return result

    async def edges_among(self, ids: Sequence[str], relations: Sequence[str]) -> list[StoredEdge]:
        if not ids:
            return []
        rows = await self._rows(
            "MATCH (a:Memory)-[r]->(b:Memory) WHERE a.id IN $ids AND b.id IN $ids "
            "AND r.deleted_at IS NULL RETURN a.id AS a, b.id AS b, type(r) AS rel, "
            "properties(r) AS props",
            ids=list(ids),
        )
        wanted = set(relations)
        edges = [
            _edge(row["a"], row["b"], row["rel"], row["props"])
            for row in rows
            if str(row["rel"]).lower() in wanted
        ]
        return sorted(edges, key=lambda e: (e.from_id, e.to_id, e.relation))

    async def conflicted(
        self, namespace: str | None, memory_id: str | None, limit: int
    ) -> list[StoredMemory]:
        rows = await self._rows(
            "MATCH (m:Memory) WHERE m.conflicted = true AND m.deleted_at IS NULL "
            "AND ($ns IS NULL OR m.namespace = $ns) AND ($id IS NULL OR m.id = $id) "
            "RETURN m ORDER BY m.id LIMIT $limit",
            ns=namespace,
            id=memory_id,
            limit=limit,
        )
        return [_memory(row["m"]) for row in rows]

    async def contradictions(
        self, namespace: str | None, memory_id: str | None, limit: int
    ) -> list[StoredEdge]:
        rows = await self._rows(
            "MATCH (a:Memory)-[r:CONTRADICTS]->(b:Memory) WHERE r.deleted_at IS NULL "
            "AND ($ns IS NULL OR a.namespace = $ns) AND ($id IS NULL OR a.id = $id OR b.id = $id) "
            "RETURN a.id AS a, b.id AS b, properties(r) AS props ORDER BY a, b LIMIT $limit",
            ns=namespace,
            id=memory_id,
            limit=limit,
        )
        return [_edge(row["a"], row["b"], "contradicts", row["props"]) for row in rows]

    async def due_for_expiry(self, now: str, limit: int) -> list[str]:
        rows = await self._rows(
            "MATCH (m:Memory) WHERE m.expires_at IS NOT NULL AND m.deleted_at IS NULL "
            "AND m.expires_at <= $now RETURN m.id AS id ORDER BY m.expires_at, id LIMIT $limit",
            now=now,
            limit=limit,
        )
        return [str(row["id"]) for row in rows]

    async def stats(self, namespace: str | None, now: str) -> dict[str, Any]:
        scope = "($ns IS NULL OR m.namespace = $ns)"
        live = _cypher(
            f"MATCH (m:Memory) WHERE {scope} AND {_live('m')} "
            "RETURN m.type AS type, m.namespace AS ns, m.tags AS tags",
        )
        rows = await self._rows(live, ns=namespace, now=now)
        by_type: dict[str, int] = {}
        by_namespace: dict[str, int] = {}
        by_tag: dict[str, int] = {}
        for row in rows:
            by_type[row["type"]] = by_type.get(row["type"], 0) + 1
            by_namespace[row["ns"]] = by_namespace.get(row["ns"], 0) + 1
            for tag in row["tags"] or []:
                by_tag[tag] = by_tag.get(tag, 0) + 1
        dead = _cypher(
            f"MATCH (m:Memory) WHERE {scope} AND NOT {_live('m')} RETURN count(m) AS n",
        )
        deleted = await self._rows(dead, ns=namespace, now=now)
        edges = await self._rows(
            "MATCH (:Memory)-[r]->(:Memory) WHERE r.deleted_at IS NULL RETURN count(r) AS n"
        )
        contents = await self._rows("MATCH (c:Content) RETURN count(c) AS n")
        return {
            "live": len(rows),
            "by_type": by_type,
            "by_namespace": by_namespace,
            "by_tag": by_tag,
            "deleted": int(deleted[0]["n"]),
            "edges": int(edges[0]["n"]),
            "contents": int(contents[0]["n"]),
        }

    async def dump(self) -> dict[str, Any]:
        records = await self._rows(
            "MATCH (m:Memory) RETURN m.id AS id, m.version AS version, m.heads AS heads, "
            "m.content_hash AS hash, m.vector_clock AS clock, m.deleted_at AS deleted_at "
            "ORDER BY id"
        )
        versions = await self._rows("MATCH (v:Version) RETURN v ORDER BY v.memory_id, v.version")
        edges = await self._rows(
            "MATCH (a:Memory)-[r]->(b:Memory) WHERE r.deleted_at IS NULL "
            "RETURN a.id AS a, b.id AS b, type(r) AS rel, properties(r) AS props"
        )
        return {
            "records": [
                [
                    r["id"],
                    int(r["version"]),
                    [int(h) for h in r["heads"]],
                    r["hash"],
                    json.loads(r["clock"]),
                    r["deleted_at"],
                ]
                for r in records
            ],
            "versions": [_version(row["v"]) for row in versions],
            "edges": sorted(
                (_edge(row["a"], row["b"], row["rel"], row["props"]) for row in edges),
                key=lambda e: (e.from_id, e.to_id, e.relation),
            ),
        }

    async def reindex_fulltext(self) -> int:
        """The full-text index is maintained by the database; report what it covers."""
        rows = await self._rows("MATCH (m:Memory) RETURN count(m) AS n")
        return int(rows[0]["n"])

    async def clear(self) -> None:
        """Delete every node (tests and benchmarks start from an empty graph)."""
        async with self.write() as tx:
            await tx._rows("MATCH (n) DETACH DELETE n")

    async def close(self) -> None:
        if self._driver is not None:
            with anyio.CancelScope(shield=True):
                await self._driver.close()
            self._driver = None
