"""SQLite for every AIOS server: WAL, explicit pragmas, numbered migrations, one writer.

    async with Database.open(path, migrations=MIGRATIONS, synchronous="FULL") as db:
        async with db.transaction() as tx:            # BEGIN IMMEDIATE ... COMMIT
            await tx.execute("INSERT INTO jobs(id) VALUES (?)", (job_id,))
        row = await db.fetch_one("SELECT * FROM jobs WHERE id = ?", (job_id,))

- Pragmas are set explicitly, not left to library defaults: ``journal_mode=WAL``,
  ``foreign_keys=ON``, ``busy_timeout``, ``synchronous`` (``FULL`` where money or job state is
  written, ``NORMAL`` elsewhere).
- Writes are serialised by a lock the database owns (one writer task per database), and each
  ``transaction()`` is one ``BEGIN IMMEDIATE`` transaction: committed whole, or rolled back whole
  on any exception, cancellation included (the rollback is shielded and bounded).
- Reads outside a transaction use a second, query-only connection, so they see only committed
  data even while another task holds the write transaction open.
- Migrations are an append-only numbered list, applied at open in one transaction and recorded
  with the SHA-256 of their SQL; an applied migration that was edited afterwards is refused.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import aiosqlite
import anyio

__all__ = ["Database", "Migration", "Row", "Transaction", "load_migrations"]

Row = sqlite3.Row
Parameters = Sequence[Any] | dict[str, Any]
Synchronous = Literal["NORMAL", "FULL"]

_MIGRATION_FILE: Final = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
_ROLLBACK_BOUND_S: Final = 5.0


@dataclass(frozen=True)
class Migration:
    """One schema step. ``number`` runs 1..n without gaps; ``sql`` may hold several statements."""

    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    """Read ``NNN_name.sql`` files in number order."""
    migrations = []
    for path in sorted(directory.iterdir()):
        match = _MIGRATION_FILE.match(path.name)
        if match:
            number, name = int(match.group(1)), match.group(2)
            migrations.append(Migration(number, name, path.read_text(encoding="utf-8")))
    return migrations


class Transaction:
    """The statements of one open write transaction."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, parameters: Parameters = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        cursor = await self._connection.execute(sql, parameters)
        changed = cursor.rowcount
        await cursor.close()
        return changed

    async def execute_returning_id(self, sql: str, parameters: Parameters = ()) -> int:
        """Run an INSERT; returns the new row's rowid."""
        cursor = await self._connection.execute(sql, parameters)
        row_id = cursor.lastrowid
        await cursor.close()
        assert row_id is not None, sql
        return row_id

    async def executemany(self, sql: str, rows: Iterable[Parameters]) -> None:
        await self._connection.executemany(sql, rows)

    async def fetch_one(self, sql: str, parameters: Parameters = ()) -> Row | None:
        async with self._connection.execute(sql, parameters) as cursor:
            row: Row | None = await cursor.fetchone()
            return row

    async def fetch_all(self, sql: str, parameters: Parameters = ()) -> list[Row]:
        async with self._connection.execute(sql, parameters) as cursor:
            return list(await cursor.fetchall())


class Database:
    """One SQLite file, opened by one server process."""

    def __init__(
        self, connection: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path
    ) -> None:
        self._connection = connection
        self._reader = reader
        self._write_lock = anyio.Lock()
        self.path = path

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: Path,
        *,
        migrations: Sequence[Migration] | Path = (),
        synchronous: Synchronous = "NORMAL",
        busy_timeout_ms: int = 5000,
    ) -> AsyncIterator[Database]:
        """Open (creating parents), set the pragmas, apply pending migrations.

        Raises:
            ValueError: the migration list has gaps or an applied migration was edited.
        """
        assert synchronous in ("NORMAL", "FULL"), synchronous
        steps = load_migrations(migrations) if isinstance(migrations, Path) else list(migrations)
        _check_numbering(steps)
        await anyio.Path(path).parent.mkdir(parents=True, exist_ok=True)
        pragmas = (
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
            f"PRAGMA synchronous={synchronous}",
        )
        connection = await aiosqlite.connect(path, isolation_level=None)
        reader: aiosqlite.Connection | None = None
        try:
            connection.row_factory = sqlite3.Row
            for pragma in pragmas:
                await connection.execute(pragma)
            reader = await aiosqlite.connect(path, isolation_level=None)
            reader.row_factory = sqlite3.Row
            for pragma in (*pragmas[1:3], "PRAGMA query_only=ON"):
                await reader.execute(pragma)
            database = cls(connection, reader, path)
            await database._migrate(steps)
            yield database
        finally:
            with anyio.CancelScope(shield=True):
                if reader is not None:
                    await reader.close()
                await connection.close()

    async def _migrate(self, steps: list[Migration]) -> None:
        async with self.transaction() as tx:
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " number INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
                " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
            )
            applied = {
                row["number"]: row
                for row in await tx.fetch_all(
                    "SELECT number, name, checksum FROM schema_migrations"
                )
            }
            for step in steps:
                recorded = applied.get(step.number)
                if recorded is not None:
                    if recorded["checksum"] != step.checksum:
                        raise ValueError(
                            f"{self.path}: migration {step.number:03d}_{recorded['name']} was "
                            "edited after it was applied; add a new migration instead."
                        )
                    continue
                for statement in _statements(step.sql):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations(number, name, checksum) VALUES (?, ?, ?)",
                    (step.number, step.name, step.checksum),
                )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One ``BEGIN IMMEDIATE`` write transaction: all of it commits, or none of it."""
        async with self._write_lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._connection)
            except BaseException:
                with anyio.move_on_after(_ROLLBACK_BOUND_S, shield=True):
                    await self._connection.rollback()
                raise
            with anyio.CancelScope(shield=True):
                await self._connection.commit()

    async def fetch_one(self, sql: str, parameters: Parameters = ()) -> Row | None:
        """A read of committed data (WAL: readers never wait for the writer)."""
        async with self._reader.execute(sql, parameters) as cursor:
            row: Row | None = await cursor.fetchone()
            return row

    async def fetch_all(self, sql: str, parameters: Parameters = ()) -> list[Row]:
        async with self._reader.execute(sql, parameters) as cursor:
            return list(await cursor.fetchall())

    async def pragma(self, name: str) -> Any:
        assert name.isidentifier(), name
        row = await self.fetch_one(f"PRAGMA {name}")
        return None if row is None else row[0]


def _check_numbering(steps: list[Migration]) -> None:
    numbers = [step.number for step in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise ValueError(f"migrations must be numbered 1..{len(steps)} without gaps; got {numbers}")


def _statements(sql: str) -> list[str]:
    """Split a migration script into complete statements (triggers keep their inner ';')."""
    statements: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements
