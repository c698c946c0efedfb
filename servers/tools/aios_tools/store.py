"""Persisted capability-token state in tools.db: sliding-log rate buckets, use counters and
revocations. A charge and its audit decision row commit in one ``BEGIN IMMEDIATE`` transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aios_shared.audit import AuditEntry, AuditLog, audit_migration
from aios_shared.capabilities import VerifiedToken
from aios_shared.db import Database, Migration, Transaction
from aios_shared.errors import RateLimited

MIGRATIONS: tuple[Migration, ...] = (
    audit_migration(1),
    Migration(
        2,
        "token_state",
        """
        CREATE TABLE token_charges (
            bucket TEXT NOT NULL,
            ts_ms INTEGER NOT NULL
        );
        CREATE INDEX token_charges_bucket_ts ON token_charges(bucket, ts_ms);
        CREATE TABLE token_uses (
            bucket TEXT PRIMARY KEY,
            used INTEGER NOT NULL
        );
        CREATE TABLE token_revocations (
            id TEXT PRIMARY KEY,
            prune_after INTEGER NOT NULL,
            reason TEXT NOT NULL,
            revoked_by TEXT NOT NULL
        );
        """,
    ),
)


class TokenStore:
    """Rate and use counters plus revocations for capability tokens, durable in SQLite."""

    def __init__(self, db: Database, revoked: set[str]) -> None:
        self._db = db
        self._revoked = revoked
        self.audit = AuditLog(db)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path, *, synchronous: str = "NORMAL") -> AsyncIterator[TokenStore]:
        assert synchronous in ("NORMAL", "FULL"), synchronous
        async with Database.open(
            path,
            migrations=MIGRATIONS,
            synchronous="FULL" if synchronous == "FULL" else "NORMAL",
        ) as db:
            rows = await db.fetch_all("SELECT id FROM token_revocations")
            yield cls(db, {str(row["id"]) for row in rows})

    def is_revoked(self, ids: Sequence[str]) -> bool:
        """The synchronous check ``capabilities.verify`` calls (state loaded at start-up)."""
        return any(i in self._revoked for i in ids)

    async def revoke(self, revoked_id: str, *, prune_after: int, reason: str, by: str) -> None:
        """Durable before it returns; the revocation row and its audit row commit together."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT OR IGNORE INTO token_revocations(id, prune_after, reason, revoked_by)"
                " VALUES (?, ?, ?, ?)",
                (revoked_id, prune_after, reason, by),
            )
            await self.audit.append(
                by, "revoke_capability", revoked_id, "ok", {"reason": reason}, tx=tx
            )
        self._revoked.add(revoked_id)

    async def prune(self, now: int, leeway_s: int) -> int:
        """Drop revocations whose token expired, and charges older than one day."""
        async with self._db.transaction() as tx:
            gone = await tx.fetch_all(
                "SELECT id FROM token_revocations WHERE prune_after + ? < ?", (leeway_s, now)
            )
            await tx.execute(
                "DELETE FROM token_revocations WHERE prune_after + ? < ?", (leeway_s, now)
            )
            await tx.execute("DELETE FROM token_charges WHERE ts_ms <= ?", ((now - 86400) * 1000,))
        for row in gone:
            self._revoked.discard(str(row["id"]))
        return len(gone)

    async def charge(
        self,
        verified: VerifiedToken,
        *,
        now_ms: int,
        actor: str,
        action: str,
        details: dict[str, Any],
    ) -> AuditEntry:
        """Charge every bucket of the token and write the audit decision row, atomically.

        Raises ``RateLimited`` with reason ``rate_limited`` (``retry_after_ms``, ``bucket``) or
        ``token_exhausted``; then nothing is charged and no row is written.
        """
        async with self._db.transaction() as tx:
            await self._admit(tx, verified, now_ms)
            for bucket in verified.buckets:
                if bucket.n is not None:
                    await tx.execute(
                        "INSERT INTO token_charges(bucket, ts_ms) VALUES (?, ?)",
                        (bucket.id, now_ms),
                    )
                if bucket.uses_max is not None:
                    await tx.execute(
                        "INSERT INTO token_uses(bucket, used) VALUES (?, 1)"
                        " ON CONFLICT(bucket) DO UPDATE SET used = used + 1",
                        (bucket.id,),
                    )
            return await self.audit.append(
                actor,
                action,
                verified.tool,
                "allow",
                {**details, "token_jti": verified.jti, "token_chain": list(verified.chain)},
                tx=tx,
            )

    async def _admit(self, tx: Transaction, verified: VerifiedToken, now_ms: int) -> None:
        for bucket in verified.buckets:
            if bucket.uses_max is not None:
                row = await tx.fetch_one(
                    "SELECT used FROM token_uses WHERE bucket = ?", (bucket.id,)
                )
                if row is not None and int(row["used"]) >= bucket.uses_max:
                    raise RateLimited(
                        f"The capability token has used all {bucket.uses_max} of its calls.",
                        hint="Ask the issuer for a new token.",
                        details={"reason": "token_exhausted", "bucket": bucket.id},
                    )
            if bucket.n is None or bucket.w is None:
                continue
            since = now_ms - bucket.w * 1000
            row = await tx.fetch_one(
                "SELECT COUNT(*) AS n, MIN(ts_ms) AS oldest FROM token_charges"
                " WHERE bucket = ? AND ts_ms > ?",
                (bucket.id, since),
            )
            assert row is not None
            if int(row["n"]) >= bucket.n:
                retry = int(row["oldest"]) + bucket.w * 1000 - now_ms
                raise RateLimited(
                    f"The capability token allows {bucket.n} calls per {bucket.w} s.",
                    hint=f"Retry in {retry} ms.",
                    details={
                        "reason": "rate_limited",
                        "retry_after_ms": retry,
                        "bucket": bucket.id,
                    },
                )

    async def remaining(self, verified: VerifiedToken, *, now_ms: int) -> list[int | None]:
        """Calls left in each rate bucket now (None for a use-only bucket)."""
        left: list[int | None] = []
        for bucket in verified.buckets:
            if bucket.n is None or bucket.w is None:
                left.append(None)
                continue
            row = await self._db.fetch_one(
                "SELECT COUNT(*) AS n FROM token_charges WHERE bucket = ? AND ts_ms > ?",
                (bucket.id, now_ms - bucket.w * 1000),
            )
            assert row is not None
            left.append(bucket.n - int(row["n"]))
        return left
