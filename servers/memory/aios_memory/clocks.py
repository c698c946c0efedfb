"""Vector clocks and change reasons (spec/memory.md sections 2.5 and 2.6).

A clock maps actor strings to counters >= 1; zeros are dropped and a missing key reads 0. Clocks
are never pruned: dropping entries can turn ``before`` into ``concurrent``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

__all__ = [
    "REASONS",
    "Ordering",
    "Reason",
    "compare",
    "dominated",
    "increment",
    "join_reasons",
    "merge",
    "normalize",
]

Ordering = Literal["equal", "before", "after", "concurrent"]
Reason = Literal["observation", "inference", "correction", "decay"]
REASONS: Final[tuple[Reason, ...]] = ("observation", "inference", "correction", "decay")

Clock = dict[str, int]


def normalize(clock: Mapping[str, int]) -> Clock:
    """Drop zero entries and sort keys, so equal clocks are equal dicts and equal JSON."""
    return {actor: clock[actor] for actor in sorted(clock) if clock[actor] != 0}


def compare(a: Mapping[str, int], b: Mapping[str, int]) -> Ordering:
    """Order two clocks over the union of their keys."""
    less = greater = False
    for actor in set(a) | set(b):
        left, right = a.get(actor, 0), b.get(actor, 0)
        less = less or left < right
        greater = greater or left > right
    if less and greater:
        return "concurrent"
    if less:
        return "before"
    if greater:
        return "after"
    return "equal"


def dominated(a: Mapping[str, int], by: Mapping[str, int]) -> bool:
    """True when ``a`` happened before or equals ``by``."""
    return compare(a, by) in ("before", "equal")


def merge(*clocks: Mapping[str, int]) -> Clock:
    """Component-wise maximum."""
    merged: Clock = {}
    for clock in clocks:
        for actor, counter in clock.items():
            merged[actor] = max(merged.get(actor, 0), counter)
    return normalize(merged)


def increment(clock: Mapping[str, int], actor: str) -> Clock:
    """Add one to ``actor``'s counter."""
    result = dict(clock)
    result[actor] = result.get(actor, 0) + 1
    return normalize(result)


def _subsumes(a: Reason, b: Reason) -> bool:
    if a == b or a == "decay":
        return True
    return a in ("correction", "inference") and b == "observation"


def join_reasons(a: Reason, b: Reason) -> Reason:
    """The reason of a version that combines two: whichever subsumes the other, else
    ``correction`` (observation ⊑ correction, observation ⊑ inference, everything ⊑ decay)."""
    if _subsumes(a, b):
        return a
    if _subsumes(b, a):
        return b
    return "correction"


def join_all(reasons: Iterable[Reason]) -> Reason:
    """Fold :func:`join_reasons` over several reasons (at least one)."""
    items = list(reasons)
    assert items, items
    result = items[0]
    for reason in items[1:]:
        result = join_reasons(result, reason)
    return result
