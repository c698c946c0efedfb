"""The usage ledger, the pins and the audit log, in the server's own SQLite file.

Every finished, failed or cancelled model call appends one row; rows are never updated. Writes
commit with ``synchronous=FULL`` in WAL mode (``aios_shared.db``), so a row the caller was told
about survives a ``kill -9`` of the server. Operator actions (load, unload, pin, pull) and
refusals go to the hash-chained audit log (``aios_shared.audit``). All the server's SQL is here.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

from aios_inference.models import UsageRecord, UsageTotals
from aios_shared.audit import AuditLog, audit_migration
from aios_shared.db import Database, Migration, Row, load_migrations

__all__ = ["UsageFilter", "UsageStore"]

_MIGRATIONS_DIRECTORY: Final = Path(__file__).parent / "migrations"


def migrations() -> list[Migration]:
    """The server's own numbered SQL files, then the shared audit log's table."""
    own = load_migrations(_MIGRATIONS_DIRECTORY)
    return [*own, audit_migration(len(own) + 1)]


_COLUMNS: Final = (
    "request_id, recorded_at, caller, agent_id, job_id, operation, model, backend, outcome, "
    "prompt_tokens, completion_tokens, total_ms, load_ms, prompt_ms, completion_ms, cost"
)
_FILTERS: Final = ("caller", "agent_id", "job_id", "model", "backend")


class UsageFilter(dict[str, str]):
    """Equality filters on the ledger: any of caller, agent_id, job_id, model, backend."""


class UsageStore:
    """The ledger, the pins and the audit chain in one database (``synchronous=FULL``)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._audit = AuditLog(database)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[UsageStore]:
        async with Database.open(path, migrations=migrations(), synchronous="FULL") as database:
            yield cls(database)

    async def append(self, record: UsageRecord) -> None:
        """Append one usage row; it is on disk when this returns."""
        assert record.prompt_tokens >= 0, record
        assert record.cost >= 0, record
        values = tuple(record.model_dump().values())
        async with self._database.transaction() as tx:
            await tx.execute(
                f"INSERT INTO usage ({_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values
            )

    async def query(
        self, filters: UsageFilter, *, after: int, limit: int
    ) -> tuple[list[UsageRecord], UsageTotals, int | None]:
        """A page of rows (oldest first, after the cursor) and the totals over all matches."""
        assert limit > 0, limit
        where, parameters = _where(filters)
        rows = await self._database.fetch_all(
            f"SELECT seq, {_COLUMNS} FROM usage WHERE seq > ? {where} ORDER BY seq LIMIT ?",
            (after, *parameters, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        total = await self._database.fetch_one(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
            f" COALESCE(SUM(cost), 0), COALESCE(SUM(total_ms), 0) FROM usage WHERE 1=1 {where}",
            parameters,
        )
        assert total is not None, "an aggregate always returns a row"
        totals = UsageTotals(
            calls=int(total[0]),
            prompt_tokens=int(total[1]),
            completion_tokens=int(total[2]),
            cost=float(total[3]),
            total_ms=float(total[4]),
        )
        return [_record(row) for row in rows], totals, (int(rows[-1]["seq"]) if more else None)

    async def set_pin(self, backend: str, model: str, pinned: bool, actor: str) -> None:
        """Record a pin or unpin together with its audit entry."""
        async with self._database.transaction() as tx:
            if pinned:
                await tx.execute(
                    "INSERT OR REPLACE INTO pins (backend, model, pinned_at) VALUES (?, ?, ?)",
                    (backend, model, now_iso()),
                )
            else:
                await tx.execute(
                    "DELETE FROM pins WHERE backend = ? AND model = ?", (backend, model)
                )
            action = "model.pin" if pinned else "model.unpin"
            await self._audit.append(actor, action, f"{backend}/{model}", "ok", tx=tx)

    async def pins(self) -> set[tuple[str, str]]:
        rows = await self._database.fetch_all("SELECT backend, model FROM pins")
        return {(str(row["backend"]), str(row["model"])) for row in rows}

    async def audit(
        self, actor: str, action: str, subject: str, outcome: str, details: dict[str, Any]
    ) -> None:
        """Append an operator action or refusal to the hash-chained audit log."""
        await self._audit.append(actor, action, subject, outcome, details)

    @property
    def audit_log(self) -> AuditLog:
        return self._audit


def _where(filters: UsageFilter) -> tuple[str, tuple[str, ...]]:
    unknown = set(filters) - set(_FILTERS)
    assert not unknown, unknown
    keys = [key for key in _FILTERS if key in filters]
    return "".join(f" AND {key} = ?" for key in keys), tuple(filters[key] for key in keys)


def _record(row: Row) -> UsageRecord:
    names = [name.strip() for name in _COLUMNS.split(",")]
    return UsageRecord.model_validate({name: row[name] for name in names})


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
