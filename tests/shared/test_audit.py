"""The hash-chained audit log (aios_shared.audit): appends chain from genesis, verify names the
first broken link, an entry commits with its effect or not at all, and kill -9 mid-burst tears
nothing and loses nothing acknowledged."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import rfc8785
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from aios_shared.audit import (
    AUDIT_DETAILS_BYTES_MAX,
    AUDIT_TEXT_CHARS_MAX,
    GENESIS_HASH,
    AuditEntry,
    AuditLog,
    AuditVerification,
    audit_migration,
)
from aios_shared.db import Database, Migration

pytestmark = pytest.mark.anyio

MIGRATIONS = [
    audit_migration(1),
    Migration(2, "charges", "CREATE TABLE charges (token TEXT PRIMARY KEY);"),
]
WRITER = Path(__file__).with_name("audit_writer.py")
ACKNOWLEDGED_BEFORE_KILL = 100
START_DEADLINE_S = 60.0


async def filled(path: Path, count: int) -> list[AuditEntry]:
    async with Database.open(path, migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        return [
            await log.append("operator", "token.issue", f"tok-{index}", "ok", {"scope": ["a"]})
            for index in range(count)
        ]


async def verified(path: Path, *, page_rows: int = 256) -> AuditVerification:
    async with Database.open(path, migrations=MIGRATIONS) as db:
        return await AuditLog(db).verify(page_rows=page_rows)


def expected_hash(entry: AuditEntry) -> str:
    """The chain rule, restated independently of the module: SHA-256 over the previous hash's
    hex and the RFC 8785 JSON of every field but the two hashes."""
    content = entry.model_dump(exclude={"prev_hash", "entry_hash"})
    return hashlib.sha256(entry.prev_hash.encode() + rfc8785.dumps(content)).hexdigest()


async def test_entries_chain_from_genesis_and_verify(tmp_path: Path) -> None:
    """Entry 1 links to 64 zeros, each later one to its predecessor's hash; verify and head
    agree with what append returned."""
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        first = await log.append("op", "mint", "client-1", "ok", {"amount": 100})
        second = await log.append("op", "revoke", "tok-1", "denied")
        result = await log.verify()
        head = await log.head()
    assert (first.position, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.position, second.prev_hash) == (2, first.entry_hash)
    assert [expected_hash(first), expected_hash(second)] == [first.entry_hash, second.entry_hash]
    assert result == AuditVerification(ok=True, entries_checked=2, head_hash=second.entry_hash)
    assert head == (2, second.entry_hash)


async def test_an_entry_reads_back_exactly_as_append_returned_it(tmp_path: Path) -> None:
    """Details are stored as canonical JSON, and append returns them as read back from it, so a
    later query gives the very same entry."""
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        entry = await log.append(
            "op", "mint", "c1", "ok", {"amount": 1.0, "path": ["a", "b"], "note": None}
        )
        stored = await db.fetch_one("SELECT details_json FROM audit_log")
        queried = await log.query()
    assert entry.details == {"amount": 1, "path": ["a", "b"], "note": None}
    assert stored is not None
    assert stored["details_json"] == '{"amount":1,"note":null,"path":["a","b"]}'
    assert queried == [entry]


async def test_verify_of_an_empty_log_is_ok(tmp_path: Path) -> None:
    """No entries is a valid chain whose head is genesis."""
    assert await verified(tmp_path / "a.db") == AuditVerification(
        ok=True, entries_checked=0, head_hash=GENESIS_HASH
    )


def swap(first: int, second: int) -> str:
    return (
        f"UPDATE audit_log SET position = -1 WHERE position = {first};"
        f"UPDATE audit_log SET position = {first} WHERE position = {second};"
        f"UPDATE audit_log SET position = {second} WHERE position = -1;"
    )


@pytest.mark.parametrize(
    ("tamper", "position", "problem"),
    [
        pytest.param("UPDATE audit_log SET outcome = 'denied' WHERE position = 3", 3, "altered",
                     id="field"),
        pytest.param("UPDATE audit_log SET at = '2000-01-01T00:00:00.000000Z' WHERE position = 2",
                     2, "altered", id="time"),
        pytest.param("""UPDATE audit_log SET details_json = '{"scope":["admin"]}'
                     WHERE position = 4""", 4, "altered", id="details"),
        pytest.param("""UPDATE audit_log SET details_json = '{ "scope": ["a"] }'
                     WHERE position = 4""", 4, "not canonical", id="details-respaced"),
        pytest.param("UPDATE audit_log SET details_json = '{' WHERE position = 5", 5,
                     "not valid JSON", id="details-unreadable"),
        pytest.param(f"UPDATE audit_log SET entry_hash = '{'a' * 64}' WHERE position = 3", 3,
                     "altered", id="hash"),
        pytest.param("DELETE FROM audit_log WHERE position = 2", 2, "entry 2 is missing",
                     id="deleted"),
        pytest.param("DELETE FROM audit_log WHERE position = 2;"
                     "UPDATE audit_log SET position = position - 1 WHERE position > 2", 2,
                     "does not follow", id="deleted-renumbered"),
        pytest.param(swap(2, 3), 2, "does not follow", id="reordered"),
        pytest.param(swap(4, 5), 4, "does not follow", id="reordered-across-pages"),
    ],
)  # fmt: skip
async def test_verify_names_the_first_broken_link(
    tmp_path: Path, tamper: str, position: int, problem: str
) -> None:
    """Editing any field, deleting an entry or reordering entries is found at its position, in
    one page or across page boundaries; the entries before it still count as checked."""
    path = tmp_path / "a.db"
    entries = await filled(path, 6)
    with sqlite3.connect(path) as raw:
        raw.executescript(tamper)
    whole, paged = await verified(path), await verified(path, page_rows=2)
    assert whole == paged
    assert (whole.ok, whole.first_broken_position) == (False, position)
    assert whole.problem is not None
    assert problem in whole.problem
    assert whole.entries_checked == position - 1
    assert whole.head_hash == (entries[position - 2].entry_hash if position > 1 else GENESIS_HASH)


async def test_an_edited_entry_rehashed_by_hand_still_breaks_the_next_link(
    tmp_path: Path,
) -> None:
    """Recomputing the edited entry's own hash does not help: the next entry names the old one."""
    path = tmp_path / "a.db"
    entries = await filled(path, 4)
    forged = entries[1].model_copy(update={"outcome": "denied"})
    with sqlite3.connect(path) as raw:
        raw.execute(
            "UPDATE audit_log SET outcome = ?, entry_hash = ? WHERE position = 2",
            (forged.outcome, expected_hash(forged)),
        )
    result = await verified(path)
    assert (result.ok, result.first_broken_position, result.entries_checked) == (False, 3, 2)


async def test_truncating_the_newest_entries_leaves_a_valid_shorter_chain(tmp_path: Path) -> None:
    """A chain cannot see its own missing tail: verify passes with the older head, which is why
    the host publishes each head (DESIGN.md section 8)."""
    path = tmp_path / "a.db"
    entries = await filled(path, 5)
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM audit_log WHERE position = 5")
    assert await verified(path) == AuditVerification(
        ok=True, entries_checked=4, head_hash=entries[3].entry_hash
    )


async def test_an_audit_row_commits_with_its_effect_or_not_at_all(tmp_path: Path) -> None:
    """Appended inside the caller's transaction, the audit row shares its fate: a failure after
    both writes leaves neither the effect nor the row, and the chain goes on unforked."""
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO charges VALUES ('t1')")
            kept = await log.append("agent", "charge", "t1", "ok", tx=tx)
        with pytest.raises(RuntimeError, match="after the audit row"):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO charges VALUES ('t2')")
                await log.append("agent", "charge", "t2", "ok", tx=tx)
                raise RuntimeError("the effect failed after the audit row was written")
        after = await log.append("agent", "charge", "t3", "ok")
        charges = await db.fetch_all("SELECT token FROM charges")
        entries = await log.query()
        result = await log.verify()
    assert [row["token"] for row in charges] == ["t1"]
    assert entries == [kept, after]
    assert after.prev_hash == kept.entry_hash
    assert result.ok


async def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    """Tasks sharing a Database and a second Database on the same file (as another process
    would) append at once; the head is read inside each write, so the chain never forks."""
    path = tmp_path / "a.db"
    async with (
        Database.open(path, migrations=MIGRATIONS) as db,
        Database.open(path, migrations=MIGRATIONS) as other,
    ):

        async def appender(log: AuditLog, name: str) -> None:
            for index in range(20):
                await log.append(name, "burst", str(index), "ok")

        async with anyio.create_task_group() as group:
            for name in ("a", "b", "c"):
                group.start_soon(appender, AuditLog(db), name)
            group.start_soon(appender, AuditLog(other), "other")
        result = await AuditLog(db).verify()
        entries = await AuditLog(db).query(limit=1000)
    assert (result.ok, result.entries_checked) == (True, 80)
    assert sorted(entry.actor for entry in entries) == sorted(["a", "b", "c", "other"] * 20)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"details": {"ratio": float("nan")}}, "JSON values only", id="nan"),
        pytest.param({"details": {"big": 2**60}}, "JSON values only", id="integer-over-2**53"),
        pytest.param({"details": {"raw": b"bytes"}}, "JSON values only", id="bytes"),
        pytest.param({"details": {"blob": "x" * AUDIT_DETAILS_BYTES_MAX}},
                     f"the limit is {AUDIT_DETAILS_BYTES_MAX}", id="details-too-big"),
        pytest.param({"actor": "a" * (AUDIT_TEXT_CHARS_MAX + 1)},
                     f"actor is {AUDIT_TEXT_CHARS_MAX + 1} characters", id="actor-too-long"),
        pytest.param({"subject": "s" * (AUDIT_TEXT_CHARS_MAX + 1)},
                     f"the limit is {AUDIT_TEXT_CHARS_MAX}", id="subject-too-long"),
    ],
)  # fmt: skip
async def test_an_entry_that_is_not_json_or_over_a_limit_is_refused_and_nothing_is_written(
    tmp_path: Path, arguments: dict[str, object], message: str
) -> None:
    """Details are JSON values only and every field is bounded; a refused entry leaves no row."""
    fields: dict[str, object] = {"actor": "op", "subject": "s", "details": {}, **arguments}
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        with pytest.raises(ValueError, match=message):
            await log.append(
                str(fields["actor"]), "mint", str(fields["subject"]), "ok",
                fields["details"],  # type: ignore[arg-type]  # non-JSON values on purpose
            )  # fmt: skip
        assert await log.head() == (0, GENESIS_HASH)


async def test_query_filters_by_action_and_actor_and_pages_by_position(tmp_path: Path) -> None:
    """Query returns committed entries oldest first, filtered by equality, after a position,
    at most ``limit`` of them."""
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        log = AuditLog(db)
        entries = [
            await log.append(actor, action, "s", "ok")
            for actor, action in [("op", "mint"), ("agent", "charge"), ("op", "charge")] * 2
        ]
        charges = await log.query(action="charge")
        by_operator = await log.query(actor="op", action="charge")
        page = await log.query(since_position=2, limit=3)
    assert charges == [entries[1], entries[2], entries[4], entries[5]]
    assert by_operator == [entries[2], entries[5]]
    assert page == entries[2:5]


@pytest.mark.parametrize(
    ("since_position", "limit", "message"),
    [
        pytest.param(0, 0, r"within 1\.\.1000, not 0", id="limit-zero"),
        pytest.param(0, 1001, r"within 1\.\.1000, not 1001", id="limit-over-max"),
        pytest.param(-1, 10, "0 or more, not -1", id="negative-position"),
    ],
)
async def test_a_query_outside_its_bounds_is_refused(
    tmp_path: Path, since_position: int, limit: int, message: str
) -> None:
    """Pages are capped at 1000 entries (STYLE.md section 6); the refusal names the limit."""
    async with Database.open(tmp_path / "a.db", migrations=MIGRATIONS) as db:
        with pytest.raises(ValueError, match=message):
            await AuditLog(db).query(since_position=since_position, limit=limit)


async def read_acknowledgement(lines: BufferedByteReceiveStream) -> tuple[int, str] | None:
    """The next ``position hash`` line of the writer, or None once its stdout has ended."""
    try:
        line = await lines.receive_until(b"\n", 256)
    except anyio.IncompleteRead:  # end of output, possibly cut mid-line by the kill
        return None
    position, entry_hash = line.decode().split()
    return int(position), entry_hash


async def stderr_of(process: Process) -> str:
    assert process.stderr is not None
    chunks = [chunk async for chunk in process.stderr]
    return b"".join(chunks).decode(errors="replace")


async def test_kill_9_mid_burst_tears_nothing_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    """A real process appends in a tight loop (synchronous=FULL, one transaction per entry) and
    is SIGKILLed mid-burst: the chain verifies and every acknowledged entry is there, unchanged."""
    path = tmp_path / "audit.db"
    acknowledged: dict[int, str] = {}
    command = [sys.executable, str(WRITER), str(path)]
    async with await anyio.open_process(command, stdin=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        with anyio.fail_after(START_DEADLINE_S):  # a guard against a hang, not a timing check
            first = await read_acknowledgement(lines)
        assert first is not None, await stderr_of(process)
        acknowledged[first[0]] = first[1]
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            line = await read_acknowledgement(lines)
            assert line is not None, await stderr_of(process)
            acknowledged[line[0]] = line[1]
        process.send_signal(signal.SIGKILL)
        while (line := await read_acknowledgement(lines)) is not None:
            acknowledged[line[0]] = line[1]
        assert await process.wait() == -signal.SIGKILL
    async with Database.open(path, migrations=[audit_migration(1)]) as db:
        result = await AuditLog(db).verify()
        rows = await db.fetch_all(
            "SELECT position, entry_hash FROM audit_log WHERE position <= ?", (max(acknowledged),)
        )
    assert result.ok, result
    assert {row["position"]: row["entry_hash"] for row in rows} == acknowledged
