"""Append-only, hash-chained audit log in a server's own database.

Each entry's hash is SHA-256 over the previous entry's hash and the RFC 8785 canonical JSON of
the entry's content, so editing, deleting or reordering any entry breaks the chain from there
on, and ``verify()`` names the first position where it breaks. The genesis ``prev_hash`` is 64
zeros. An entry is appended inside the caller's transaction when given one, so an effect and its
audit row commit together (a rate-limit charge, a mint) or not at all.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Final

import rfc8785
from pydantic import BaseModel, ConfigDict, Field

from aios_shared.db import Database, Migration, Row, Transaction

__all__ = [
    "AUDIT_MIGRATION_SQL",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditVerification",
    "audit_migration",
]

GENESIS_HASH: Final = "0" * 64
_VERIFY_PAGE_ROWS: Final = 1000
_QUERY_ROWS_MAX: Final = 1000

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


def audit_migration(number: int) -> Migration:
    """The audit table as migration ``number`` of a server's list."""
    return Migration(number, "audit_log", AUDIT_MIGRATION_SQL)


class AuditEntry(BaseModel):
    """One recorded decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: int = Field(ge=1)
    at: str
    actor: str
    action: str
    subject: str
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditVerification(BaseModel):
    """What ``verify()`` found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    entries_checked: int
    head_hash: str
    first_broken_position: int | None = None
    problem: str | None = None


def _entry_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + rfc8785.dumps(content)).hexdigest()


def _content(position: int, at: str, actor: str, action: str, subject: str, outcome: str,
             details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "position": position,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        "details": details,
    }


def _from_row(row: Row) -> AuditEntry:
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


class AuditLog:
    """The audit chain of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        details: dict[str, Any] | None = None,
        *,
        tx: Transaction | None = None,
    ) -> AuditEntry:
        """Append one entry. The head is read inside the write transaction, so concurrent
        appends can never fork the chain."""
        if tx is None:
            async with self._db.transaction() as own:
                return await self._append(own, actor, action, subject, outcome, details or {})
        return await self._append(tx, actor, action, subject, outcome, details or {})

    async def _append(
        self,
        tx: Transaction,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        details: dict[str, Any],
    ) -> AuditEntry:
        head = await tx.fetch_one(
            "SELECT position, entry_hash FROM audit_log ORDER BY position DESC LIMIT 1"
        )
        position = 1 if head is None else head["position"] + 1
        prev_hash = GENESIS_HASH if head is None else head["entry_hash"]
        at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        content = _content(position, at, actor, action, subject, outcome, details)
        entry_hash = _entry_hash(prev_hash, content)
        await tx.execute(
            "INSERT INTO audit_log(position, at, actor, action, subject, outcome, details_json,"
            " prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (position, at, actor, action, subject, outcome, rfc8785.dumps(details).decode(),
             prev_hash, entry_hash),
        )  # fmt: skip
        entry = AuditEntry(**content, prev_hash=prev_hash, entry_hash=entry_hash)
        assert entry.position >= 1, entry
        return entry

    async def head(self) -> tuple[int, str]:
        """(position, hash) of the newest entry; (0, genesis) when empty."""
        row = await self._db.fetch_one(
            "SELECT position, entry_hash FROM audit_log ORDER BY position DESC LIMIT 1"
        )
        return (0, GENESIS_HASH) if row is None else (row["position"], row["entry_hash"])

    async def query(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since_position: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries after ``since_position`` in order, filtered; at most 1000."""
        limit = max(1, min(limit, _QUERY_ROWS_MAX))
        rows = await self._db.fetch_all(
            "SELECT * FROM audit_log WHERE position > ? AND (? IS NULL OR action = ?)"
            " AND (? IS NULL OR actor = ?) ORDER BY position LIMIT ?",
            (since_position, action, action, actor, actor, limit),
        )
        return [_from_row(row) for row in rows]

    async def verify(self) -> AuditVerification:
        """Walk the chain in pages and name the first broken link."""
        expected_prev = GENESIS_HASH
        expected_position = 1
        checked = 0
        while True:
            rows = await self._db.fetch_all(
                "SELECT * FROM audit_log WHERE position >= ? ORDER BY position LIMIT ?",
                (expected_position, _VERIFY_PAGE_ROWS),
            )
            if not rows:
                return AuditVerification(ok=True, entries_checked=checked, head_hash=expected_prev)
            for row in rows:
                problem = _problem(row, expected_position, expected_prev)
                if problem is not None:
                    return AuditVerification(
                        ok=False,
                        entries_checked=checked,
                        head_hash=expected_prev,
                        first_broken_position=expected_position,
                        problem=problem,
                    )
                checked += 1
                expected_prev = row["entry_hash"]
                expected_position += 1


def _problem(row: Row, expected_position: int, expected_prev: str) -> str | None:
    position = row["position"]
    if position != expected_position:
        return f"entry {expected_position} is missing (next is {position})"
    if row["prev_hash"] != expected_prev:
        return f"entry {position} does not follow entry {position - 1} (deleted or reordered)"
    try:
        details = json.loads(row["details_json"])
    except json.JSONDecodeError:
        return f"entry {position} has unreadable details"
    content = _content(
        position, row["at"], row["actor"], row["action"], row["subject"], row["outcome"], details
    )
    if _entry_hash(expected_prev, content) != row["entry_hash"]:
        return f"entry {position} was altered (its hash does not match its content)"
    return None
