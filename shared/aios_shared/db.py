"""SQLite for every AIOS server: WAL, explicit pragmas, numbered migrations, one writer.

    async with Database.open(path, migrations=MIGRATIONS, synchronous="FULL") as db:
        async with db.transaction() as tx:            # BEGIN IMMEDIATE ... COMMIT
            await tx.execute("INSERT INTO jobs(id) VALUES (?)", (job_id,))
        row = await db.fetch_one("SELECT * FROM jobs WHERE id = ?", (job_id,))

- Pragmas are set explicitly, not left to library defaults: ``journal_mode=WAL``,
  ``foreign_keys=ON``, ``busy_timeout``, ``synchronous`` (``FULL`` where money or job state is
  written, ``NORMAL`` elsewhere); ``isolation_level=None``, so only our own ``BEGIN IMMEDIATE`` /
  ``COMMIT`` / ``ROLLBACK`` open and close transactions.
- Writes are serialised by a lock the database owns (one writer task per database); other
  processes are kept out by ``BEGIN IMMEDIATE`` and the busy timeout. Each ``transaction()`` is
  committed whole, or rolled back whole on any exception, cancellation included (the rollback is
  shielded and bounded).
- Reads outside a transaction use a second, query-only connection, so they see only committed
  data even while another task holds the write transaction open. Rows are ``sqlite3.Row``: by
  column name or by index.
- Migrations are an append-only numbered list, applied at open in one transaction and recorded
  with the SHA-256 of their SQL; an applied migration that was edited afterwards is refused.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import aiosqlite
import anyio
import anyio.to_thread

__all__ = [
    "Database",
    "Migration",
    "MigrationError",
    "Parameters",
    "Row",
    "SqlValue",
    "Synchronous",
    "Transaction",
    "load_migrations",
]

Row = sqlite3.Row
SqlValue = str | int | float | bytes | None
Parameters = Sequence[SqlValue] | Mapping[str, SqlValue]
Synchronous = Literal["NORMAL", "FULL"]

_MIGRATION_FILE: Final = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
_MIGRATION_NAME: Final = re.compile(r"^[a-z0-9_]+$")
_CLEANUP_BOUND_S: Final = 5.0
_SCHEMA_MIGRATIONS: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " number INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
    " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
)


class MigrationError(ValueError):
    """The migration list is malformed, or does not match what the database file recorded.

    Both are programmer errors: fix the list (append a new migration), never the file.
    """


@dataclass(frozen=True)
class Migration:
    """One schema step. ``number`` runs 1..n without gaps; ``sql`` may hold several statements.

    The SQL runs inside the migration transaction, so statements SQLite refuses there (``VACUUM``,
    ``PRAGMA journal_mode``, ``PRAGMA foreign_keys``) do not belong in a migration.
    """

    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 hex of the SQL: recorded at apply time, compared at every later open."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    """Read ``NNN_name.sql`` files in number order.

    A ``.sql`` file with any other name is refused rather than skipped: a silently skipped file
    would be a migration that never runs.

    Raises:
        MigrationError: a ``.sql`` file is not named ``NNN_name.sql``.
    """
    migrations = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: a migration file is named NNN_name.sql")
        number, name = int(match.group(1)), match.group(2)
        migrations.append(Migration(number, name, path.read_text(encoding="utf-8")))
    return sorted(migrations, key=lambda migration: migration.number)


class Transaction:
    """The statements of one open write transaction, valid only inside its ``async with``.

    Every statement checks that the transaction is still open first, and after: a statement run
    after SQLite ended the transaction (a swallowed error that rolled it back, a ``COMMIT`` in the
    body) would otherwise autocommit on its own, outside the all-or-nothing unit.
    """

    def __init__(self, database: Database, connection: aiosqlite.Connection) -> None:
        self._database = database
        self._connection = connection
        self._active = True

    @property
    def database(self) -> Database:
        """The database this transaction writes to (callers check they were handed their own)."""
        return self._database

    async def execute(self, sql: str, parameters: Parameters = ()) -> int:
        """Run one statement; returns the number of rows it changed (-1 for a query)."""
        self._require_open(sql)
        cursor = await self._connection.execute(sql, _checked(parameters))
        changed = cursor.rowcount
        await cursor.close()
        self._require_open(sql)
        return changed

    async def execute_returning_id(self, sql: str, parameters: Parameters = ()) -> int:
        """Run an INSERT; returns the new row's rowid."""
        self._require_open(sql)
        cursor = await self._connection.execute(sql, _checked(parameters))
        row_id = cursor.lastrowid
        await cursor.close()
        self._require_open(sql)
        assert row_id is not None, sql
        return row_id

    async def executemany(self, sql: str, rows: Iterable[Parameters]) -> int:
        """Run one statement per parameter row; returns the rows changed in total."""
        self._require_open(sql)
        # Materialised here, so no caller code runs on aiosqlite's thread.
        cursor = await self._connection.executemany(sql, [_checked(row) for row in rows])
        changed = cursor.rowcount
        await cursor.close()
        self._require_open(sql)
        return changed

    async def fetch_one(self, sql: str, parameters: Parameters = ()) -> Row | None:
        """The first row, seeing this transaction's own uncommitted writes."""
        self._require_open(sql)
        async with self._connection.execute(sql, _checked(parameters)) as cursor:
            row: Row | None = await cursor.fetchone()
        return row

    async def fetch_all(self, sql: str, parameters: Parameters = ()) -> list[Row]:
        """All rows, seeing this transaction's own uncommitted writes."""
        self._require_open(sql)
        return list(await self._connection.execute_fetchall(sql, _checked(parameters)))

    def _close(self) -> None:
        self._active = False

    def _require_open(self, sql: str) -> None:
        if not self._active:
            raise RuntimeError(f"statement after its transaction block ended: {sql[:80]!r}")
        if not self._connection.in_transaction:
            raise RuntimeError(
                "the transaction was already ended (rolled back by SQLite after an error, or by a"
                f" COMMIT/ROLLBACK statement); refusing to autocommit: {sql[:80]!r}"
            )


class Database:
    """One SQLite file, opened by one server process: a writer and a query-only reader."""

    def __init__(
        self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = anyio.Lock()
        self._path = path

    @property
    def path(self) -> Path:
        return self._path

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
        """Open (creating parent directories), set the pragmas, apply pending migrations.

        ``migrations`` is the list itself or a directory of ``NNN_name.sql`` files. With none,
        the file is opened as it is and its recorded migrations are not checked (inspection).

        Raises:
            MigrationError: the list has gaps, or an applied migration was edited, or the file
                holds a migration this code does not know (a newer version wrote it).
            ValueError: ``synchronous`` or ``busy_timeout_ms`` is out of range.
            sqlite3.NotSupportedError: the file cannot use WAL (``:memory:``, some network
                filesystems).
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be 0 or more, not {busy_timeout_ms}")
        if isinstance(migrations, Path):
            steps = await anyio.to_thread.run_sync(load_migrations, migrations)
        else:
            steps = list(migrations)
        _check_numbering(steps)
        await anyio.Path(path).parent.mkdir(parents=True, exist_ok=True)
        pragmas = (
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={busy_timeout_ms:d}",
            f"PRAGMA synchronous={synchronous}",
        )
        writer = await _connect(path, pragmas)
        reader: aiosqlite.Connection | None = None
        try:
            mode = await writer.execute_fetchall("PRAGMA journal_mode=WAL")
            if [tuple(row) for row in mode] != [("wal",)]:
                raise sqlite3.NotSupportedError(
                    f"{path}: SQLite refused WAL mode (got {list(map(tuple, mode))}); "
                    "put the database on a local filesystem."
                )
            reader = await _connect(path, (*pragmas, "PRAGMA query_only=ON"))
            database = cls(writer, reader, path)
            await database._migrate(steps)
            yield database
        finally:
            # Closing is cleanup: it must run under cancellation, and must not hang forever.
            with anyio.move_on_after(_CLEANUP_BOUND_S, shield=True):
                if reader is not None:
                    await reader.close()
                await writer.close()

    async def _migrate(self, steps: list[Migration]) -> None:
        if not steps:
            return  # Code that expects no schema opens the file as it is, to inspect it.
        async with self.transaction() as tx:
            await tx.execute(_SCHEMA_MIGRATIONS)
            applied = {
                int(row["number"]): row
                for row in await tx.fetch_all(
                    "SELECT number, name, checksum FROM schema_migrations ORDER BY number"
                )
            }
            _check_applied(self._path, steps, applied)
            for step in steps[len(applied) :]:
                for statement in _statements(step.sql):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations(number, name, checksum) VALUES (?, ?, ?)",
                    (step.number, step.name, step.checksum),
                )
            recorded = await tx.fetch_one("SELECT COUNT(*) FROM schema_migrations")
            assert recorded is not None, "an aggregate always returns a row"
            assert recorded[0] == len(steps), (recorded[0], len(steps))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One ``BEGIN IMMEDIATE`` write transaction: all of it commits, or none of it.

        Not reentrant: opening a second one from inside the first raises ``RuntimeError``
        (``anyio.Lock``); pass the open ``Transaction`` down instead.
        """
        async with self._write_lock:
            transaction = Transaction(self, self._writer)
            try:
                # BEGIN sits inside the ``try``: cancelled while it waits on another process's
                # lock, it may still start in aiosqlite's thread, and the rollback below then
                # ends it. aiosqlite runs one connection's calls in FIFO order, so the rollback
                # is queued behind anything still in flight, even once we stop waiting for it.
                await self._writer.execute_fetchall("BEGIN IMMEDIATE")
                yield transaction
                # Shielded: once the body is done, a cancellation must not leave the caller
                # unsure whether the commit happened.
                with anyio.CancelScope(shield=True):
                    await self._writer.execute_fetchall("COMMIT")
            except BaseException:
                with anyio.move_on_after(_CLEANUP_BOUND_S, shield=True):
                    await self._writer.rollback()  # a no-op when no transaction is open
                raise
            finally:
                transaction._close()

    async def fetch_one(self, sql: str, parameters: Parameters = ()) -> Row | None:
        """The first row, read from committed data (WAL: readers never wait for the writer)."""
        async with self._reader.execute(sql, _checked(parameters)) as cursor:
            row: Row | None = await cursor.fetchone()
        return row

    async def fetch_all(self, sql: str, parameters: Parameters = ()) -> list[Row]:
        """All rows, read from committed data; put a ``LIMIT`` on anything that can grow."""
        return list(await self._reader.execute_fetchall(sql, _checked(parameters)))

    async def pragma(self, name: str) -> SqlValue:
        """The value of a pragma as the reader sees it (it carries the writer's settings)."""
        assert name.isidentifier(), name
        row = await self.fetch_one(f"PRAGMA {name}")
        if row is None:
            return None
        value: SqlValue = row[0]
        return value


async def _connect(path: Path, pragmas: Sequence[str]) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        connection.row_factory = sqlite3.Row
        for pragma in pragmas:
            await connection.execute_fetchall(pragma)
    except BaseException:
        with anyio.move_on_after(_CLEANUP_BOUND_S, shield=True):
            await connection.close()
        raise
    return connection


def _checked(parameters: Parameters) -> Parameters:
    # A bare string is a Sequence too: sqlite3 would bind each character as a parameter.
    assert not isinstance(parameters, str | bytes), parameters
    return parameters


def _check_numbering(steps: list[Migration]) -> None:
    numbers = [step.number for step in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise MigrationError(
            f"migrations must be numbered 1..{len(steps)} without gaps; got {numbers}"
        )
    for step in steps:
        if _MIGRATION_NAME.match(step.name) is None:
            raise MigrationError(
                f"migration {step.number}: name {step.name!r} is not lower_snake_case"
            )


def _check_applied(path: Path, steps: list[Migration], applied: dict[int, Row]) -> None:
    """Every recorded migration must be one of ours, unchanged since it was applied."""
    if sorted(applied) != list(range(1, len(applied) + 1)):
        raise MigrationError(
            f"{path}: the file records migrations {sorted(applied)}, not 1..{len(applied)};"
            " its schema_migrations table was altered by hand."
        )
    for number, recorded in applied.items():
        if number > len(steps):
            raise MigrationError(
                f"{path}: the file has migration {number:03d}_{recorded['name']}, which this code"
                f" does not know (it knows 1..{len(steps)}); a newer version wrote it."
            )
        if recorded["checksum"] != steps[number - 1].checksum:
            raise MigrationError(
                f"{path}: migration {number:03d}_{recorded['name']} was edited after it was"
                " applied; restore it and add a new migration instead."
            )


def _statements(sql: str) -> list[str]:
    """Split a script into single statements, since ``executescript`` would commit first.

    Cut at each ``;`` that completes a statement, so a trigger body or a string keeps its own.
    """
    statements: list[str] = []
    pending = ""
    *pieces, tail = sql.split(";")
    for piece in pieces:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    remainder = (pending + tail).strip()
    if remainder:
        statements.append(remainder)
    return [statement for statement in statements if statement.strip("; \t\r\n")]
