"""The hash-chained audit log: appends chain, verify names the first broken link, an entry
commits with its effect or not at all, and a kill -9 mid-burst tears nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from aios_shared.audit import GENESIS_HASH, AuditLog, audit_migration
from aios_shared.db import Database, Migration
from tests.helpers import REPO

pytestmark = pytest.mark.anyio

MIGRATIONS = [
    audit_migration(1),
    Migration(
        2, "charges", "CREATE TABLE charges (token TEXT PRIMARY KEY, used INTEGER NOT NULL);"
    ),
]


async def filled(path: Path, count: int) -> None:
    async with Database.open(path, migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        for index in range(count):
            await log.append("operator", "token.issue", f"tok-{index}", "ok", {"scope": ["a"]})


async def verify(path: Path) -> tuple[bool, int | None, str | None]:
    async with Database.open(path, migrations=MIGRATIONS) as db:
        result = await AuditLog(db).verify()
    return result.ok, result.first_broken_position, result.problem


async def test_entries_chain_from_genesis_and_verify(tmp_path: Path) -> None:
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        first = await log.append("op", "mint", "client-1", "ok", {"amount": 100})
        second = await log.append("op", "revoke", "tok-1", "denied")
        result = await log.verify()
        head = await log.head()
        minted = await log.query(action="mint")
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.entry_hash
    assert (first.position, second.position) == (1, 2)
    assert result.ok
    assert result.entries_checked == 2
    assert head == (2, second.entry_hash)
    assert minted == [first]


async def test_verify_of_an_empty_log_is_ok(tmp_path: Path) -> None:
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        result = await AuditLog(db).verify()
    assert (result.ok, result.entries_checked, result.head_hash) == (True, 0, GENESIS_HASH)


@pytest.mark.parametrize(
    ("tamper", "position", "problem"),
    [
        pytest.param(
            "UPDATE audit_log SET outcome = 'denied' WHERE position = 3", 3, "altered", id="field"
        ),
        pytest.param(
            'UPDATE audit_log SET details_json = \'{"scope":["admin"]}\' WHERE position = 4',
            4,
            "altered",
            id="details",
        ),
        pytest.param("DELETE FROM audit_log WHERE position = 2", 2, "missing", id="deleted"),
        pytest.param("DELETE FROM audit_log WHERE position = 5", None, None, id="deleted-head"),
    ],
)
async def test_verify_names_the_first_broken_link(
    tmp_path: Path, tamper: str, position: int | None, problem: str | None
) -> None:
    """Tampering with any field or deleting an entry is found at its position. Truncating the
    newest entry leaves a valid shorter chain: the host's status publishes each head, which is
    what catches that."""
    path = tmp_path / "a.db"
    await filled(path, 5)
    with sqlite3.connect(path) as raw:
        raw.execute(tamper)
    ok, broken, found = await verify(path)
    assert broken == position
    assert ok is (position is None)
    if problem is not None:
        assert found is not None
        assert problem in found


async def test_a_renumbered_deletion_is_still_found(tmp_path: Path) -> None:
    """Deleting entry 2 and renumbering the rest keeps positions dense, but the chain of hashes
    no longer links up."""
    path = tmp_path / "a.db"
    await filled(path, 4)
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM audit_log WHERE position = 2")
        raw.execute("UPDATE audit_log SET position = position - 1 WHERE position > 2")
    ok, broken, found = await verify(path)
    assert not ok
    assert broken == 2
    assert found is not None
    assert "does not follow" in found


async def test_an_audit_row_commits_with_its_effect_or_not_at_all(tmp_path: Path) -> None:
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO charges VALUES ('t1', 1)")
            await log.append("agent", "charge", "t1", "ok", tx=tx)
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO charges VALUES ('t2', 1)")
                await log.append("agent", "charge", "t2", "ok", tx=tx)
                raise RuntimeError("the effect failed after the audit row was written")
        charges = await db.fetch_all("SELECT token FROM charges")
        entries = await log.query()
    assert [row["token"] for row in charges] == ["t1"]
    assert [entry.subject for entry in entries] == ["t1"]


async def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        log = AuditLog(db)

        async def appender(name: str) -> None:
            for index in range(20):
                await log.append(name, "burst", str(index), "ok")

        async with anyio.create_task_group() as group:
            for name in ("a", "b", "c"):
                group.start_soon(appender, name)
        result = await log.verify()
    assert result.ok
    assert result.entries_checked == 60


@pytest.mark.slow
async def test_kill_9_mid_burst_tears_nothing_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    """A real process appends as fast as it can; SIGKILL lands mid-burst. Every position it
    acknowledged is there and the chain verifies (synchronous=FULL, one transaction per entry)."""
    path = tmp_path / "audit.db"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "shared" / "audit_writer.py"), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    acknowledged = 0
    try:
        for line in process.stdout:
            acknowledged = int(line)
            if acknowledged >= 200:
                break
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        acknowledged = max([acknowledged, *(int(line) for line in process.stdout.read().split())])
    finally:
        process.stdout.close()
        if process.poll() is None:
            process.kill()
    async with Database.open(path, migrations=[audit_migration(1)]) as db:
        result = await AuditLog(db).verify()
        head, _ = await AuditLog(db).head()
    assert result.ok, result
    assert head >= acknowledged
