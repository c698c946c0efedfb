"""The usage ledger on a real SQLite file: append, filters, pages, totals, reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios_inference.models import UsageRecord
from aios_inference.store import UsageFilter, UsageStore, now_iso

pytestmark = pytest.mark.anyio


def record(index: int, agent_id: str) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{index}",
        recorded_at=now_iso(),
        caller="local",
        agent_id=agent_id,
        job_id=None,
        operation="chat",
        model="m",
        backend="b",
        outcome="ok",
        prompt_tokens=10 * index,
        completion_tokens=index,
        total_ms=1.0,
        load_ms=0.0,
        prompt_ms=0.5,
        completion_ms=0.5,
        cost=0.25,
    )


async def test_usage_pages_follow_the_cursor_and_totals_cover_every_match(tmp_path: Path) -> None:
    """Pages are oldest first and capped; the cursor continues where a page ended; totals are
    over all matching rows, not the page; another agent's rows are not counted."""
    path = tmp_path / "inference.db"
    async with UsageStore.open(path) as store:
        for index in range(1, 6):
            await store.append(record(index, "a"))
        await store.append(record(9, "other"))
        first, totals, cursor = await store.query(UsageFilter(agent_id="a"), after=0, limit=2)
        assert cursor is not None
        second, _, cursor_two = await store.query(UsageFilter(agent_id="a"), after=cursor, limit=2)
        assert cursor_two is not None
        last, _, end = await store.query(UsageFilter(agent_id="a"), after=cursor_two, limit=2)
    assert [row.request_id for row in first + second + last] == ["r1", "r2", "r3", "r4", "r5"]
    assert end is None
    assert (totals.calls, totals.prompt_tokens, totals.completion_tokens) == (5, 150, 15)
    assert totals.cost == pytest.approx(1.25)


async def test_reopening_the_ledger_keeps_rows_and_applies_no_migration_twice(
    tmp_path: Path,
) -> None:
    """Migrations are recorded: a second open finds the rows, the pin and its audit entry on
    an intact chain."""
    path = tmp_path / "inference.db"
    async with UsageStore.open(path) as store:
        await store.append(record(1, "a"))
        await store.set_pin("ollama", "m", True, "operator")
    async with UsageStore.open(path) as store:
        rows, totals, _ = await store.query(UsageFilter(), after=0, limit=10)
        pins = await store.pins()
        verification = await store.audit_log.verify()
        head = await store.audit_log.head()
    assert [row.request_id for row in rows] == ["r1"]
    assert totals.calls == 1
    assert pins == {("ollama", "m")}
    assert verification.ok
    assert head[0] == 1
