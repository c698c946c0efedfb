"""Append-only, hash-chained audit log in a server's own database.

    entry_hash = SHA-256( prev_hash (64 hex chars, ASCII) || JCS(content) )

where ``content`` is the entry's fields except the two hashes (position, at, actor, action,
subject, outcome, details) and JCS is RFC 8785 canonical JSON. The prefix binds each entry to the
one before it, so editing, deleting or reordering any entry breaks the chain from there on, and
``verify()`` names the first position where it breaks. The genesis ``prev_hash`` is 64 zeros.

An entry is appended inside the caller's transaction when given one, so an effect and its audit
row commit together (a rate-limit charge, a mint) or not at all. The head is read inside the
write transaction, so concurrent appends, from tasks or from processes, never fork the chain.

Truncating the newest entries leaves a shorter chain that still verifies; only a head published
elsewhere (the host's status) catches that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Final

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from aios_shared.db import Database, Migration, Row, Transaction

__all__ = [
    "AUDIT_DETAILS_BYTES_MAX",
    "AUDIT_MIGRATION_SQL",
    "AUDIT_QUERY_ROWS_MAX",
    "AUDIT_TEXT_CHARS_MAX",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditVerification",
    "audit_migration",
]

GENESIS_HASH: Final = "0" * 64
AUDIT_TEXT_CHARS_MAX: Final = 1024
AUDIT_DETAILS_BYTES_MAX: Final = 64 * 1024
AUDIT_QUERY_ROWS_MAX: Final = 1000
# Bounds verify()'s memory: at most this many rows (each up to AUDIT_DETAILS_BYTES_MAX) at once.
_VERIFY_PAGE_ROWS: Final = 256

# Applied migrations are never edited (aios_shared.db refuses a changed checksum), so this text
# stays byte for byte as it is; a change to the table is a new migration of each server.
AUDIT_MIGRATION_SQL: Final = """
CREATE TABLE audit_log (
    position INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL UNIQUE
);
CREATE INDEX audit_log_action ON audit_log(action, position);
CREATE INDEX audit_log_actor ON audit_log(actor, position);
"""

_COLUMNS: Final = (
    "position, at, actor, action, subject, outcome, details_json, prev_hash, entry_hash"
)
_HEAD: Final = "SELECT position, entry_hash FROM audit_log ORDER BY position DESC LIMIT 1"

AuditText = Annotated[str, Field(max_length=AUDIT_TEXT_CHARS_MAX)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def audit_migration(number: int) -> Migration:
    """The audit table as migration ``number`` of a server's own list."""
    return Migration(number, "audit_log", AUDIT_MIGRATION_SQL)


class AuditEntry(BaseModel):
    """One recorded decision: who did what to which subject, and how it ended."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: int = Field(ge=1)
    at: str = Field(description="ISO-8601 UTC with microseconds, e.g. 2026-01-02T03:04:05.000006Z")
    actor: AuditText
    action: AuditText
    subject: AuditText
    outcome: AuditText
    details: dict[str, JsonValue]
    prev_hash: Sha256Hex
    entry_hash: Sha256Hex


class AuditVerification(BaseModel):
    """What ``verify()`` found.

    ``entries_checked`` counts the entries that verified, and ``head_hash`` is the hash of the
    last of them (genesis when none): on a broken chain, the good prefix before the break.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    entries_checked: int = Field(ge=0)
    head_hash: str
    first_broken_position: int | None = None
    problem: str | None = None


class AuditLog:
    """The audit chain of one database; holds no state, so every read is of the file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        details: Mapping[str, JsonValue] | None = None,
        *,
        tx: Transaction | None = None,
    ) -> AuditEntry:
        """Append one entry, inside ``tx`` when given (it commits or rolls back with it).

        ``details`` holds JSON values only; the returned entry carries them as read back from
        their canonical JSON (1.0 becomes 1), exactly as a later ``query`` returns them.

        Raises:
            ValueError: a text field is over ``AUDIT_TEXT_CHARS_MAX`` characters, or ``details``
                is not JSON (or over ``AUDIT_DETAILS_BYTES_MAX`` bytes as canonical JSON).
        """
        details_json = _details_json(details or {})
        texts = {"actor": actor, "action": action, "subject": subject, "outcome": outcome}
        for name, text in texts.items():
            _check_text(name, text)
        if tx is None:
            async with self._db.transaction() as own:
                return await self._append(own, actor, action, subject, outcome, details_json)
        assert tx.database is self._db, "the transaction belongs to another database"
        return await self._append(tx, actor, action, subject, outcome, details_json)

    async def _append(
        self,
        tx: Transaction,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        details_json: str,
    ) -> AuditEntry:
        head = await tx.fetch_one(_HEAD)
        position = 1 if head is None else int(head["position"]) + 1
        prev_hash = GENESIS_HASH if head is None else str(head["entry_hash"])
        at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        content = _content(position, at, actor, action, subject, outcome, json.loads(details_json))
        entry = AuditEntry.model_validate(
            {**content, "prev_hash": prev_hash, "entry_hash": _entry_hash(prev_hash, content)}
        )
        inserted = await tx.execute(
            f"INSERT INTO audit_log({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (position, at, actor, action, subject, outcome, details_json, prev_hash,
             entry.entry_hash),
        )  # fmt: skip
        assert inserted == 1, inserted
        return entry

    async def head(self) -> tuple[int, str]:
        """(position, hash) of the newest committed entry; (0, genesis) when the log is empty."""
        row = await self._db.fetch_one(_HEAD)
        if row is None:
            return 0, GENESIS_HASH
        return int(row["position"]), str(row["entry_hash"])

    async def query(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since_position: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Committed entries after ``since_position``, oldest first, filtered by equality.

        Page on with ``since_position`` set to the last position returned.

        Raises:
            ValueError: ``limit`` is outside 1..``AUDIT_QUERY_ROWS_MAX`` or ``since_position``
                is negative.
        """
        if not 1 <= limit <= AUDIT_QUERY_ROWS_MAX:
            raise ValueError(f"limit must be within 1..{AUDIT_QUERY_ROWS_MAX}, not {limit}")
        if since_position < 0:
            raise ValueError(f"since_position must be 0 or more, not {since_position}")
        where = "position > ?"
        parameters: list[str | int] = [since_position]
        for column, value in (("action", action), ("actor", actor)):
            if value is not None:
                where += f" AND {column} = ?"
                parameters.append(value)
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM audit_log WHERE {where} ORDER BY position LIMIT ?",
            (*parameters, limit),
        )
        entries = [_entry_from_row(row) for row in rows]
        assert len(entries) <= limit, (len(entries), limit)
        return entries

    async def verify(self, *, page_rows: int = _VERIFY_PAGE_ROWS) -> AuditVerification:
        """Walk the committed chain from genesis in pages and name the first broken link.

        A deleted entry shows as a gap in positions (or, renumbered, as a ``prev_hash`` that
        does not match); a reordered one as a ``prev_hash`` that does not match; an edited one
        as a hash that does not match its content.
        """
        assert page_rows >= 1, page_rows
        expected_prev = GENESIS_HASH
        expected_position = 1
        while True:
            rows = await self._db.fetch_all(
                f"SELECT {_COLUMNS} FROM audit_log WHERE position >= ? ORDER BY position LIMIT ?",
                (expected_position, page_rows),
            )
            for row in rows:
                problem = _problem(row, expected_position, expected_prev)
                if problem is not None:
                    return AuditVerification(
                        ok=False,
                        entries_checked=expected_position - 1,
                        head_hash=expected_prev,
                        first_broken_position=expected_position,
                        problem=problem,
                    )
                expected_prev = str(row["entry_hash"])
                expected_position += 1
            if len(rows) < page_rows:
                return AuditVerification(
                    ok=True, entries_checked=expected_position - 1, head_hash=expected_prev
                )


def _check_text(name: str, text: str) -> None:
    if len(text) > AUDIT_TEXT_CHARS_MAX:
        raise ValueError(
            f"audit {name} is {len(text)} characters; the limit is {AUDIT_TEXT_CHARS_MAX}."
        )


def _details_json(details: Mapping[str, JsonValue]) -> str:
    """The canonical JSON of ``details``, as stored and as hashed."""
    try:
        canonical = rfc8785.dumps(dict(details))
    except rfc8785.CanonicalizationError as error:
        raise ValueError(f"audit details must be JSON values only: {error}") from error
    if len(canonical) > AUDIT_DETAILS_BYTES_MAX:
        raise ValueError(
            f"audit details are {len(canonical)} bytes as canonical JSON; the limit is"
            f" {AUDIT_DETAILS_BYTES_MAX}."
        )
    return canonical.decode()


def _content(
    position: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    outcome: str,
    details: JsonValue,
) -> dict[str, JsonValue]:
    """The hashed fields of an entry: all of them except ``prev_hash`` and ``entry_hash``."""
    return {
        "position": position,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        "details": details,
    }


def _entry_hash(prev_hash: str, content: dict[str, JsonValue]) -> str:
    return hashlib.sha256(prev_hash.encode() + rfc8785.dumps(content)).hexdigest()


def _entry_from_row(row: Row) -> AuditEntry:
    return AuditEntry(
        position=row["position"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        subject=row["subject"],
        outcome=row["outcome"],
        details=json.loads(row["details_json"]),
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


def _problem(row: Row, expected_position: int, expected_prev: str) -> str | None:
    """Why ``row`` is not the valid entry ``expected_position``, or None when it is."""
    position = row["position"]
    if position != expected_position:
        return f"entry {expected_position} is missing (the next entry is {position})"
    if row["prev_hash"] != expected_prev:
        return f"entry {position} does not follow entry {position - 1} (deleted or reordered)"
    try:
        details: JsonValue = json.loads(row["details_json"])
        canonical = rfc8785.dumps(details).decode()
        content = _content(
            position, row["at"], row["actor"], row["action"], row["subject"], row["outcome"],
            details,
        )  # fmt: skip
        entry_hash = _entry_hash(expected_prev, content)
    except (TypeError, ValueError, RecursionError):
        # json.JSONDecodeError and rfc8785.CanonicalizationError are ValueErrors; TypeError is a
        # column whose type was changed by hand. All of them are tampering, not a crash.
        return f"entry {position} was altered (a field is not valid JSON text)"
    if canonical != row["details_json"]:
        return f"entry {position} was altered (its details are not canonical JSON)"
    if entry_hash != row["entry_hash"]:
        return f"entry {position} was altered (its hash does not match its content)"
    return None
