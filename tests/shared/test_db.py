"""The shared SQLite layer: WAL and explicit pragmas, numbered migrations recorded once, and
transactions that commit whole or not at all (cancellation included)."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from aios_shared.db import Database, Migration, load_migrations

pytestmark = pytest.mark.anyio

ITEMS = Migration(1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);")
TRIGGER = Migration(
    2,
    "items_log",
    """
CREATE TABLE items_log (name TEXT NOT NULL);
CREATE TRIGGER items_logged AFTER INSERT ON items BEGIN
    INSERT INTO items_log(name) VALUES (new.name);
END;
""",
)


async def test_a_database_opens_in_wal_mode_with_the_pragmas_set(tmp_path: Path) -> None:
    async with Database.open(tmp_path / "a" / "b.db", synchronous="FULL") as db:
        assert await db.pragma("journal_mode") == "wal"
        assert await db.pragma("foreign_keys") == 1
        assert await db.pragma("busy_timeout") == 5000


async def test_migrations_apply_once_in_order_and_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with Database.open(path, migrations=[ITEMS, TRIGGER]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES (?)", ("first",))
    async with Database.open(path, migrations=[ITEMS, TRIGGER]) as db:
        recorded = await db.fetch_all("SELECT number, name FROM schema_migrations ORDER BY number")
        logged = await db.fetch_all("SELECT name FROM items_log")
    assert [(row["number"], row["name"]) for row in recorded] == [(1, "items"), (2, "items_log")]
    assert [row["name"] for row in logged] == ["first"]


async def test_a_new_migration_upgrades_an_older_file(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with Database.open(path, migrations=[ITEMS]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES ('old')")
    async with Database.open(path, migrations=[ITEMS, TRIGGER]) as db:
        names = await db.fetch_all("SELECT name FROM items")
        tables = await db.fetch_all("SELECT name FROM sqlite_master WHERE name = 'items_log'")
    assert [row["name"] for row in names] == ["old"]
    assert len(tables) == 1


async def test_an_edited_applied_migration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with Database.open(path, migrations=[ITEMS]):
        pass
    edited = Migration(1, "items", ITEMS.sql.replace("name TEXT", "label TEXT"))
    with pytest.raises(ValueError, match="001_items was edited after it was applied"):
        async with Database.open(path, migrations=[edited]):
            pass


async def test_migrations_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"numbered 1\.\.2 without gaps"):
        async with Database.open(tmp_path / "m.db", migrations=[ITEMS, Migration(3, "x", "")]):
            pass


async def test_migrations_load_from_numbered_files(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "002_more.sql").write_text("CREATE TABLE more (x);")
    (folder / "001_items.sql").write_text(ITEMS.sql)
    (folder / "README").write_text("not a migration")
    assert [(m.number, m.name) for m in load_migrations(folder)] == [(1, "items"), (2, "more")]
    async with Database.open(tmp_path / "m.db", migrations=folder) as db:
        assert await db.fetch_all("SELECT * FROM more") == []


async def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items(name) VALUES ('half')")
                raise RuntimeError("fails after the first write")
        assert await db.fetch_all("SELECT * FROM items") == []


async def test_a_cancelled_transaction_rolls_back(tmp_path: Path) -> None:
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        with anyio.move_on_after(0.05):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO items(name) VALUES ('cancelled')")
                await anyio.sleep(10)
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES ('after')")
        names = [row["name"] for row in await db.fetch_all("SELECT name FROM items")]
    assert names == ["after"]


async def test_reads_see_only_committed_data_while_a_write_is_open(tmp_path: Path) -> None:
    async with Database.open(tmp_path / "t.db", migrations=[ITEMS]) as db:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items(name) VALUES ('pending')")
            outside = await db.fetch_all("SELECT name FROM items")
            inside = await tx.fetch_all("SELECT name FROM items")
        after = await db.fetch_all("SELECT name FROM items")
    assert outside == []
    assert [row["name"] for row in inside] == ["pending"]
    assert [row["name"] for row in after] == ["pending"]


async def test_concurrent_writers_take_turns(tmp_path: Path) -> None:
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
