"""The seven-state job lifecycle of spec/scheduler.md section 2.2: the only legal edges."""

from __future__ import annotations

from typing import Final

from aios_scheduler.models import JobState

__all__ = ["EDGES", "TERMINAL", "is_legal", "replay"]

# (from, to) -> the table row that allows it. Everything else is illegal.
EDGES: Final[dict[tuple[JobState | None, JobState], str]] = {
    (None, "pending"): "T0",
    ("pending", "running"): "T1",
    ("pending", "cancelled"): "T2",
    ("running", "waiting_approval"): "T3",
    ("running", "checkpointed"): "T4",
    ("running", "completed"): "T5",
    ("running", "failed"): "T6",
    ("checkpointed", "failed"): "T6",
    ("waiting_approval", "failed"): "T6",
    ("checkpointed", "running"): "T7",
    ("waiting_approval", "running"): "T8",
    ("waiting_approval", "pending"): "T9",
    ("failed", "pending"): "T11",
    ("running", "cancelled"): "T12",
    ("waiting_approval", "cancelled"): "T12",
    ("checkpointed", "cancelled"): "T12",
}

TERMINAL: Final[frozenset[JobState]] = frozenset({"completed", "cancelled"})
BOUND: Final[frozenset[JobState]] = frozenset({"running", "checkpointed", "waiting_approval"})


def is_legal(current: JobState | None, target: JobState) -> bool:
    return (current, target) in EDGES


def replay(rows: list[tuple[JobState | None, JobState]]) -> JobState | None:
    """Fold a job's transition log; an illegal or discontinuous row is a broken log."""
    state: JobState | None = None
    for source, target in rows:
        assert source == state, (source, state)
        assert is_legal(source, target), (source, target)
        state = target
    return state
