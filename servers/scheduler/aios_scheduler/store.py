"""Persistence of the scheduler (spec/scheduler.md section 3.7): SQL lives here only.

Records are stored as canonical JSON bodies next to the columns that queries filter on. Every
mutating service call runs as one ``BEGIN IMMEDIATE`` transaction of ``aios_shared.db``; the
reply is sent only after COMMIT.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from aios_scheduler.models import Agent, Client, Group, Job, JobState, Lease
from aios_shared.db import Database, Transaction

__all__ = ["MIGRATIONS", "Store"]

MIGRATIONS: Final[Path] = Path(__file__).parent / "migrations"
DIGEST_TABLES: Final = (
    "clients",
    "groups",
    "agents",
    "jobs",
    "steps",
    "transitions",
    "ledger",
    "leases",
    "evaluations",
    "reputations",
    "pipelines",
    "events",
    "cursors",
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Store:
    """Typed reads and writes over one scheduler database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- meta ----------------------------------------------------------------------------

    async def meta(self, key: str) -> str | None:
        row = await self.db.fetch_one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def set_meta(self, tx: Transaction, key: str, value: str) -> None:
        await tx.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # ---- records -------------------------------------------------------------------------

    async def load_clients(self) -> list[Client]:
        rows = await self.db.fetch_all("SELECT body FROM clients ORDER BY client_id")
        return [Client.model_validate_json(row[0]) for row in rows]

    async def load_groups(self) -> list[Group]:
        rows = await self.db.fetch_all("SELECT body FROM groups ORDER BY group_id")
        return [Group.model_validate_json(row[0]) for row in rows]

    async def load_agents(self) -> list[Agent]:
        rows = await self.db.fetch_all("SELECT body FROM agents ORDER BY agent_id")
        return [Agent.model_validate_json(row[0]) for row in rows]

    async def load_live_jobs(self) -> list[Job]:
        rows = await self.db.fetch_all(
            "SELECT body FROM jobs WHERE state NOT IN ('completed', 'cancelled') ORDER BY seq"
        )
        return [Job.model_validate_json(row[0]) for row in rows]

    async def save_client(self, tx: Transaction, client: Client) -> None:
        await tx.execute(
            "INSERT INTO clients(client_id, body) VALUES (?, ?) "
            "ON CONFLICT(client_id) DO UPDATE SET body = excluded.body",
            (client.client_id, client.model_dump_json()),
        )

    async def save_group(self, tx: Transaction, group: Group) -> None:
        await tx.execute(
            "INSERT INTO groups(group_id, body) VALUES (?, ?) "
            "ON CONFLICT(group_id) DO UPDATE SET body = excluded.body",
            (group.group_id, group.model_dump_json()),
        )

    async def save_agent(self, tx: Transaction, agent: Agent) -> None:
        await tx.execute(
            "INSERT INTO agents(agent_id, body) VALUES (?, ?) "
            "ON CONFLICT(agent_id) DO UPDATE SET body = excluded.body",
            (agent.agent_id, agent.model_dump_json()),
        )

    async def save_job(self, tx: Transaction, job: Job) -> None:
        await tx.execute(
            "INSERT INTO jobs(job_id, client_id, state, seq, assigned_agent_id, idempotency_key, "
            "body) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET "
            "state = excluded.state, assigned_agent_id = excluded.assigned_agent_id, "
            "body = excluded.body",
            (
                job.job_id,
                job.client_id,
                job.state,
                job.seq,
                job.assigned_agent_id,
                job.idempotency_key,
                job.model_dump_json(),
            ),
        )

    async def get_job(self, job_id: str) -> Job | None:
        row = await self.db.fetch_one("SELECT body FROM jobs WHERE job_id = ?", (job_id,))
        return None if row is None else Job.model_validate_json(row[0])

    async def job_by_idempotency_key(self, client_id: str, key: str) -> Job | None:
        row = await self.db.fetch_one(
            "SELECT body FROM jobs WHERE client_id = ? AND idempotency_key = ?", (client_id, key)
        )
        return None if row is None else Job.model_validate_json(row[0])

    async def list_jobs(
        self,
        client_id: str | None,
        state: str | None,
        agent_id: str | None,
        after_seq: int,
        limit: int,
    ) -> list[Job]:
        clauses = ["seq > ?"]
        params: list[Any] = [after_seq]
        for column, value in (
            ("client_id", client_id),
            ("state", state),
            ("assigned_agent_id", agent_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        rows = await self.db.fetch_all(
            f"SELECT body FROM jobs WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?",
            (*params, limit),
        )
        return [Job.model_validate_json(row[0]) for row in rows]

    async def max_seq(self) -> int:
        row = await self.db.fetch_one("SELECT COALESCE(MAX(seq), 0) FROM jobs")
        return 0 if row is None else int(row[0])

    async def jobs_by_state(self) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {str(row[0]): int(row[1]) for row in rows}

    async def count_dispatched(self) -> int:
        row = await self.db.fetch_one(
            "SELECT COUNT(*) FROM transitions WHERE from_state = 'pending' AND to_state = 'running'"
        )
        return 0 if row is None else int(row[0])

    # ---- transitions and ledger ----------------------------------------------------------

    async def add_transition(
        self,
        tx: Transaction,
        job_id: str,
        source: JobState | None,
        target: JobState,
        trigger: str,
        reason: str | None,
        at: int,
    ) -> None:
        await tx.execute(
            "INSERT INTO transitions(job_id, from_state, to_state, trigger, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, source, target, trigger, reason, at),
        )

    async def transitions(self, job_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT from_state, to_state, trigger, reason, at FROM transitions "
            "WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [
            {"from": row[0], "to": row[1], "trigger": row[2], "reason": row[3], "at": row[4]}
            for row in rows
        ]

    async def add_ledger(
        self, tx: Transaction, client_id: str, delta: float, kind: str, job_id: str | None, at: int
    ) -> None:
        await tx.execute(
            "INSERT INTO ledger(client_id, delta, kind, job_id, at) VALUES (?, ?, ?, ?, ?)",
            (client_id, delta, kind, job_id, at),
        )

    async def ledger(self, client_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT delta, kind, job_id, at FROM ledger WHERE client_id = ? ORDER BY id",
            (client_id,),
        )
        return [{"delta": row[0], "kind": row[1], "job_id": row[2], "at": row[3]} for row in rows]

    # ---- leases --------------------------------------------------------------------------

    async def put_lease(self, tx: Transaction, lease: Lease) -> None:
        await tx.execute(
            "INSERT INTO leases(lease_id, job_id, agent_id, expires_at, status) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(lease_id) DO UPDATE SET "
            "expires_at = excluded.expires_at, status = excluded.status",
            (lease.lease_id, lease.job_id, lease.agent_id, lease.expires_at, lease.status),
        )

    async def get_lease(self, lease_id: str) -> Lease | None:
        row = await self.db.fetch_one(
            "SELECT lease_id, job_id, agent_id, expires_at, status FROM leases WHERE lease_id = ?",
            (lease_id,),
        )
        if row is None:
            return None
        return Lease(
            lease_id=row[0], job_id=row[1], agent_id=row[2], expires_at=row[3], status=row[4]
        )

    # ---- steps ---------------------------------------------------------------------------

    async def get_step(self, job_id: str, step_id: str) -> tuple[str, int, Any] | None:
        row = await self.db.fetch_one(
            "SELECT status, attempts, result FROM steps WHERE job_id = ? AND step_id = ?",
            (job_id, step_id),
        )
        if row is None:
            return None
        result = None if row[2] is None else json.loads(row[2])
        return str(row[0]), int(row[1]), result

    async def begin_step(self, tx: Transaction, job_id: str, step_id: str) -> None:
        await tx.execute(
            "INSERT INTO steps(job_id, step_id, status, attempts) VALUES (?, ?, 'started', 1) "
            "ON CONFLICT(job_id, step_id) DO UPDATE SET attempts = attempts + 1",
            (job_id, step_id),
        )

    async def complete_step(
        self,
        tx: Transaction,
        job_id: str,
        step_id: str,
        result_json: str,
        elapsed_ms: int,
        at: int,
    ) -> None:
        await tx.execute(
            "INSERT INTO steps(job_id, step_id, status, attempts, result, elapsed_ms, "
            "completed_at) VALUES (?, ?, 'completed', 1, ?, ?, ?) "
            "ON CONFLICT(job_id, step_id) DO UPDATE SET status = 'completed', "
            "result = excluded.result, elapsed_ms = excluded.elapsed_ms, "
            "completed_at = excluded.completed_at",
            (job_id, step_id, result_json, elapsed_ms, at),
        )

    async def invalidate_steps(
        self, tx: Transaction, job_id: str, step_ids: Sequence[str] | None
    ) -> None:
        if step_ids is None:
            await tx.execute("DELETE FROM steps WHERE job_id = ?", (job_id,))
            return
        for step_id in step_ids:
            await tx.execute(
                "DELETE FROM steps WHERE job_id = ? AND step_id = ?", (job_id, step_id)
            )

    async def steps(self, job_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT step_id, status, attempts, result, elapsed_ms, completed_at FROM steps "
            "WHERE job_id = ? ORDER BY completed_at IS NULL, completed_at, step_id",
            (job_id,),
        )
        return [
            {
                "step_id": row[0],
                "status": row[1],
                "attempts": row[2],
                "result": None if row[3] is None else json.loads(row[3]),
                "elapsed_ms": row[4],
                "completed_at": row[5],
            }
            for row in rows
        ]

    async def completed_step_count(self, job_id: str) -> int:
        row = await self.db.fetch_one(
            "SELECT COUNT(*) FROM steps WHERE job_id = ? AND status = 'completed'", (job_id,)
        )
        return 0 if row is None else int(row[0])

    # ---- idempotent requests -------------------------------------------------------------

    async def request(self, request_id: str) -> tuple[str, Any] | None:
        row = await self.db.fetch_one(
            "SELECT tool, response FROM requests WHERE request_id = ?", (request_id,)
        )
        return None if row is None else (str(row[0]), json.loads(row[1]))

    async def record_request(
        self, tx: Transaction, request_id: str, tool: str, response: Any
    ) -> None:
        await tx.execute(
            "INSERT INTO requests(request_id, tool, response) VALUES (?, ?, ?)",
            (request_id, tool, _json(response)),
        )

    # ---- evaluations ---------------------------------------------------------------------

    async def reputations(self) -> dict[str, tuple[float, int]]:
        rows = await self.db.fetch_all(
            "SELECT agent_id, reputation, evaluation_count FROM reputations"
        )
        return {str(row[0]): (float(row[1]), int(row[2])) for row in rows}

    async def save_evaluation(
        self,
        tx: Transaction,
        agent_id: str,
        body: dict[str, Any],
        reputation: float,
        count: int,
        at: int,
    ) -> None:
        await tx.execute(
            "INSERT INTO evaluations(agent_id, body, at) VALUES (?, ?, ?)",
            (agent_id, _json(body), at),
        )
        await tx.execute(
            "INSERT INTO reputations(agent_id, reputation, evaluation_count) VALUES (?, ?, ?) "
            "ON CONFLICT(agent_id) DO UPDATE SET reputation = excluded.reputation, "
            "evaluation_count = excluded.evaluation_count",
            (agent_id, reputation, count),
        )

    async def evaluations(self, agent_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT body FROM evaluations WHERE agent_id = ? ORDER BY id DESC LIMIT ?",
            (agent_id, limit),
        )
        return [json.loads(row[0]) for row in rows]

    # ---- pipelines -----------------------------------------------------------------------

    async def save_pipeline(self, tx: Transaction, pipeline_id: str, body: dict[str, Any]) -> None:
        await tx.execute(
            "INSERT INTO pipelines(pipeline_id, body) VALUES (?, ?) "
            "ON CONFLICT(pipeline_id) DO UPDATE SET body = excluded.body",
            (pipeline_id, _json(body)),
        )

    async def load_pipelines(self) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all("SELECT body FROM pipelines ORDER BY pipeline_id")
        return [json.loads(row[0]) for row in rows]

    async def add_event(self, tx: Transaction, event: dict[str, Any]) -> None:
        await tx.execute(
            "INSERT INTO events(pipeline_id, sequence, event_id, stage, type, data, timestamp) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event["pipeline_id"],
                event["sequence"],
                event["event_id"],
                event["stage"],
                event["type"],
                _json(event["data"]),
                event["timestamp"],
            ),
        )

    async def next_sequence(self, pipeline_id: str) -> int:
        row = await self.db.fetch_one(
            "SELECT COALESCE(MAX(sequence) + 1, 0) FROM events WHERE pipeline_id = ?",
            (pipeline_id,),
        )
        return 0 if row is None else int(row[0])

    async def events(
        self, pipeline_id: str, types: Sequence[str] | None, after: int, limit: int
    ) -> list[dict[str, Any]]:
        params: list[Any] = [pipeline_id, after]
        type_clause = ""
        if types is not None:
            if not types:
                return []
            type_clause = f" AND type IN ({','.join('?' * len(types))})"
            params.extend(types)
        rows = await self.db.fetch_all(
            "SELECT event_id, stage, type, data, timestamp, sequence FROM events "
            f"WHERE pipeline_id = ? AND sequence > ?{type_clause} ORDER BY sequence LIMIT ?",
            (*params, limit),
        )
        return [
            {
                "event_id": row[0],
                "pipeline_id": pipeline_id,
                "stage": row[1],
                "type": row[2],
                "data": json.loads(row[3]),
                "timestamp": row[4],
                "sequence": row[5],
            }
            for row in rows
        ]

    async def cursor(self, pipeline_id: str, stage: str) -> int:
        row = await self.db.fetch_one(
            "SELECT acked FROM cursors WHERE pipeline_id = ? AND stage = ?", (pipeline_id, stage)
        )
        return -1 if row is None else int(row[0])

    async def set_cursor(self, tx: Transaction, pipeline_id: str, stage: str, acked: int) -> None:
        await tx.execute(
            "INSERT INTO cursors(pipeline_id, stage, acked) VALUES (?, ?, ?) "
            "ON CONFLICT(pipeline_id, stage) DO UPDATE SET acked = excluded.acked",
            (pipeline_id, stage, acked),
        )

    # ---- digest --------------------------------------------------------------------------

    async def digest(self) -> str:
        """SHA-256 over a canonical dump of the durable tables (spec/system.md section 2)."""
        hasher = hashlib.sha256()
        for table in DIGEST_TABLES:
            rows = await self.db.fetch_all(f"SELECT * FROM {table} ORDER BY 1, 2")
            hasher.update(table.encode())
            for row in rows:
                hasher.update(_json(list(row)).encode())
        return hasher.hexdigest()
