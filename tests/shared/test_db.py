"""The shared SQLite layer: WAL and explicit pragmas, numbered migrations recorded once, and
transactions that commit whole or not at all, cancellation included (aios_shared.db)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from aios_shared.db import Database, Migration, MigrationError, Synchronous, load_migrations

pytestmark = pytest.mark.anyio

ITEMS = Migration(1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);")
TRIGGER = Migration(
    2,
    "items_log",
    """
CREATE TABLE items_log (name TEXT NOT NULL); CREATE INDEX items_log_name ON items_log(name);
CREATE TRIGGER items_logged AFTER INSERT ON items BEGIN
    INSERT INTO items_log(name) VALUES (new.name || ';');
END;
-- The trigger keeps its inner ';', and this trailing comment is harmless.
""",
)


async def names(db: Database) -> list[str]:
    return [str(row["name"]) for row in await db.fetch_all("SELECT name FROM items ORDER BY id")]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as raw:
        rows = raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(name) for (name,) in rows}


@pytest.mark.parametrize(("synchronous", "level"), [("NORMAL", 1), ("FULL", 2)])
async def test_a_database_opens_in_wal_mode_with_every_pragma_set(
    tmp_path: Path, synchronous: Synchronous, level: int
) -> None:
    """Pragmas are explicit, not library defaults (STYLE.md section 8); WAL is recorded in the
    file itself, and missing parent directories are created."""
    path = tmp_path / "a" / "b" / "c.db"
    async with Database.open(path, synchronous=synchronous, busy_timeout_ms=1234) as db:
        pragmas = [
            await db.pragma(name)
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        ]
    with sqlite3.connect(path) as raw:
        on_disk = raw.execute("PRAGMA journal_mode").fetchone()
    assert pragmas == ["wal", 1, 1234, level]
    assert on_disk == ("wal",)


async def test_a_database_that_cannot_use_wal_is_refused() -> None:
    """WAL is required, not hoped for: SQLite answers ``memory`` for an in-memory database."""
    with pytest.raises(sqlite3.NotSupportedError, match="refused WAL mode"):
        async with Database.open(Path(":memory:")):
            pass


async def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    """``foreign_keys=ON`` is set on the writer, so a dangling reference is refused."""
    child = Migration(
        2, "child", "CREATE TABLE child (item_id INTEGER NOT NULL REFERENCES items(id));"
    )
    async with Database.open(tmp_path / "f.db", migrations=[ITEMS, child]) as db:
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO child(item_id) VALUES (42)")


async def test_migrations_apply_once_and_are_recorded_with_their_checksum(
    tmp_path: Path,
) -> None:
    """Each migration runs once and is recorded with the SHA-256 of its SQL; opening again is a
    no-op that keeps the data and the record."""
    path = tmp_path / "m.db"
    async with Database.open(path, migrations=[ITEMS, TRIGGER]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES (?)", ("first",))
        first = await db.fetch_all("SELECT * FROM schema_migrations ORDER BY number")
    async with Database.open(path, migrations=[ITEMS, TRIGGER]) as db:
        again = await db.fetch_all("SELECT * FROM schema_migrations ORDER BY number")
        logged = await db.fetch_all("SELECT name FROM items_log")
    assert [(row["number"], row["name"], row["checksum"]) for row in first] == [
        (1, "items", ITEMS.checksum),
        (2, "items_log", TRIGGER.checksum),
    ]
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    assert all(stamp.fullmatch(row["applied_at"]) for row in first)
    assert [tuple(row) for row in again] == [tuple(row) for row in first]
    assert [row["name"] for row in logged] == ["first;"]


async def test_a_new_migration_upgrades_an_older_file(tmp_path: Path) -> None:
    """A file written with migrations 1..k gets k+1..n at the next open, its rows intact
    (STYLE.md section 9: test the upgrade from an older file)."""
    path = tmp_path / "m.db"
    async with Database.open(path, migrations=[ITEMS]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES ('old')")
    async with Database.open(path, migrations=[ITEMS, TRIGGER]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES ('new')")
        kept = await names(db)
        logged = await db.fetch_all("SELECT name FROM items_log")
    assert kept == ["old", "new"]
    assert [row["name"] for row in logged] == ["new;"]


async def test_an_edited_applied_migration_is_refused_and_the_file_is_untouched(
    tmp_path: Path,
) -> None:
    """An applied migration is never edited: a changed checksum stops the open, names the
    migration, and the original list still opens the file afterwards."""
    path = tmp_path / "m.db"
    async with Database.open(path, migrations=[ITEMS]):
        pass
    edited = Migration(1, "items", ITEMS.sql.replace("name TEXT", "label TEXT"))
    with pytest.raises(MigrationError, match="001_items was edited after it was applied"):
        async with Database.open(path, migrations=[edited, TRIGGER]):
            pass
    assert tables(path) == {"items", "schema_migrations"}
    async with Database.open(path, migrations=[ITEMS]) as db:
        assert await names(db) == []


async def test_a_file_migrated_by_newer_code_is_refused(tmp_path: Path) -> None:
    """Code that knows fewer migrations than the file records does not run against it."""
    path = tmp_path / "m.db"
    async with Database.open(path, migrations=[ITEMS, TRIGGER]):
        pass
    with pytest.raises(MigrationError, match="002_items_log, which this code does not know"):
        async with Database.open(path, migrations=[ITEMS]):
            pass


@pytest.mark.parametrize(
    ("migrations", "message"),
    [
        pytest.param([ITEMS, Migration(3, "x", "")], r"numbered 1\.\.2 without gaps", id="gap"),
        pytest.param([Migration(0, "x", "")], r"numbered 1\.\.1 without gaps", id="zero"),
        pytest.param([ITEMS, Migration(1, "x", "")], r"got \[1, 1\]", id="duplicate"),
        pytest.param([Migration(1, "Items-Table", "")], "not lower_snake_case", id="name"),
    ],
)
async def test_a_malformed_migration_list_is_refused_before_the_file_is_created(
    tmp_path: Path, migrations: list[Migration], message: str
) -> None:
    """Numbers run 1..n without gaps; a bad list is a programmer error caught at open."""
    path = tmp_path / "new" / "m.db"
    with pytest.raises(MigrationError, match=message):
        async with Database.open(path, migrations=migrations):
            pass
    assert not path.parent.exists()


async def test_a_failing_migration_applies_none_of_the_pending_ones(tmp_path: Path) -> None:
    """Pending migrations run in one transaction: one bad statement leaves the file as it was."""
    path = tmp_path / "m.db"
    broken = Migration(2, "broken", "CREATE TABLE fine (x); CREATE TABLE items (again);")
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        async with Database.open(path, migrations=[ITEMS, broken]):
            pass
    assert tables(path) == set()


async def test_migrations_load_from_numbered_files(tmp_path: Path) -> None:
    """A directory of ``NNN_name.sql`` files is a migration list in number order; other files
    are not migrations."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "002_more.sql").write_text("CREATE TABLE more (x);")
    (folder / "001_items.sql").write_text(ITEMS.sql)
    (folder / "README").write_text("not a migration")
    assert load_migrations(folder) == [ITEMS, Migration(2, "more", "CREATE TABLE more (x);")]
    async with Database.open(tmp_path / "m.db", migrations=folder) as db:
        assert await db.fetch_all("SELECT * FROM more") == []


async def test_a_misnamed_migration_file_is_refused_not_skipped(tmp_path: Path) -> None:
    """A skipped ``.sql`` file would be a migration that silently never runs."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_items.sql").write_text(ITEMS.sql)
    (folder / "2-more.sql").write_text("CREATE TABLE more (x);")
    with pytest.raises(MigrationError, match=r"2-more\.sql: a migration file is named"):
        async with Database.open(tmp_path / "m.db", migrations=folder):
            pass


async def test_a_committed_transaction_keeps_all_its_writes(tmp_path: Path) -> None:
    """``execute`` and ``executemany`` report the rows they changed; all of them commit."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        async with db.transaction() as tx:
            many = await tx.executemany("INSERT INTO items(name) VALUES (?)", [("a",), ("b",)])
            one = await tx.execute(
                "UPDATE items SET name = upper(name) WHERE name = :name", {"name": "a"}
            )
            inside = await tx.fetch_one("SELECT COUNT(*) FROM items")
        assert (many, one, inside is not None and inside[0]) == (2, 1, 2)
        assert await names(db) == ["A", "b"]


async def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    """An exception in the body rolls back every write made before it (STYLE.md section 9)."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        with pytest.raises(RuntimeError, match="fails after the first write"):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items(name) VALUES ('half')")
                raise RuntimeError("fails after the first write")
        assert await names(db) == []


async def test_a_transaction_cancelled_mid_statement_rolls_back(tmp_path: Path) -> None:
    """Cancelled while a statement is in flight in aiosqlite's thread, the transaction still
    rolls back whole (the rollback is queued behind it), and the next one works."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        with anyio.CancelScope() as scope:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items(name) VALUES ('before')")
                scope.cancel()
                await tx.execute("INSERT INTO items(name) VALUES ('in flight')")
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES ('after')")
        assert scope.cancelled_caught
        assert await names(db) == ["after"]


async def test_a_transaction_cancelled_while_waiting_for_the_file_lock_rolls_back(
    tmp_path: Path,
) -> None:
    """Cancelled while ``BEGIN IMMEDIATE`` waits on another process's write lock, the
    transaction that starts late is rolled back, not left open holding the lock."""
    path = tmp_path / "t.db"
    async with Database.open(path, migrations=[ITEMS], busy_timeout_ms=60_000) as db:
        other_process = sqlite3.connect(path, isolation_level=None)
        try:
            other_process.execute("BEGIN IMMEDIATE")
            scope = anyio.CancelScope()

            async def write() -> None:
                with scope:
                    async with db.transaction() as tx:
                        await tx.execute("INSERT INTO items(name) VALUES ('never')")

            async with anyio.create_task_group() as group:
                group.start_soon(write)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
                other_process.rollback()
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items(name) VALUES ('after')")
            other_process.execute("BEGIN IMMEDIATE")
            other_process.rollback()
        finally:
            other_process.close()
        assert scope.cancelled_caught
        assert await names(db) == ["after"]


async def test_a_statement_after_sqlite_rolled_the_transaction_back_is_refused(
    tmp_path: Path,
) -> None:
    """When SQLite itself ends the transaction and the caller swallows the error, later
    statements are refused instead of autocommitting one by one."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        with pytest.raises(RuntimeError, match="refusing to autocommit"):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items(id, name) VALUES (1, 'first')")
                with pytest.raises(sqlite3.IntegrityError):
                    await tx.execute("INSERT OR ROLLBACK INTO items(id, name) VALUES (1, 'x')")
                await tx.execute("INSERT INTO items(id, name) VALUES (2, 'would autocommit')")
        assert await names(db) == []


async def test_a_transaction_used_after_its_block_is_refused(tmp_path: Path) -> None:
    """A ``Transaction`` that escaped its ``async with`` cannot write outside the lock."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        async with db.transaction() as tx:
            pass
        with pytest.raises(RuntimeError, match="after its transaction block ended"):
            await tx.execute("INSERT INTO items(name) VALUES ('late')")
        assert await names(db) == []


async def test_a_nested_transaction_is_refused_not_deadlocked(tmp_path: Path) -> None:
    """The writer lock is not reentrant: the inner block fails at once, the outer rolls back."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        with anyio.fail_after(5), pytest.raises(RuntimeError, match="already held"):
            async with db.transaction() as outer:
                await outer.execute("INSERT INTO items(name) VALUES ('outer')")
                async with db.transaction():
                    pass
        assert await names(db) == []


async def test_reads_see_only_committed_data_while_a_write_is_open(tmp_path: Path) -> None:
    """``db.fetch_*`` reads committed data on the reader; ``tx.fetch_*`` sees its own writes."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES ('pending')")
            outside = await db.fetch_all("SELECT name FROM items")
            inside = await tx.fetch_all("SELECT name FROM items")
        after = await names(db)
    assert outside == []
    assert [row["name"] for row in inside] == ["pending"]
    assert after == ["pending"]


async def test_the_reader_cannot_write(tmp_path: Path) -> None:
    """Writes go through ``transaction()`` only; the reader connection is query-only."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.fetch_all("INSERT INTO items(name) VALUES ('sneaky') RETURNING id")
        assert await names(db) == []


async def test_concurrent_writers_take_turns(tmp_path: Path) -> None:
    """One writer at a time: read-modify-write transactions from many tasks never interleave."""
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:

        async def writer(index: int) -> None:
            for step in range(10):
                async with db.transaction() as tx:
                    count = await tx.fetch_one("SELECT COUNT(*) AS n FROM items")
                    assert count is not None
                    await anyio.lowlevel.checkpoint()
                    await tx.execute(
                        "INSERT INTO items(id, name) VALUES (?, ?)",
                        (count["n"] + 1, f"{index}-{step}"),
                    )

        async with anyio.create_task_group() as group:
            for index in range(5):
                group.start_soon(writer, index)
        rows = await db.fetch_all("SELECT id FROM items ORDER BY id")
    assert [row["id"] for row in rows] == list(range(1, 51))


async def test_opening_with_no_migrations_inspects_a_file_as_it_is(tmp_path: Path) -> None:
    """Code that expects no schema (a test, an inspection tool) reads any file without
    migrating or checking it, and writes nothing to it."""
    path = tmp_path / "m.db"
    async with Database.open(path, migrations=[ITEMS, TRIGGER]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES ('kept')")
    async with Database.open(path) as db:
        assert await names(db) == ["kept"]
    async with Database.open(tmp_path / "empty.db"):
        pass
    assert tables(tmp_path / "empty.db") == set()
