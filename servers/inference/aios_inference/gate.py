"""Per-model admission: a concurrency limit with a bounded priority queue in front of it.

A request takes a slot if one is free; otherwise it waits in the queue, ordered by the caller's
tier first (operator, then contracted, then marketplace) and then by its fairness key's virtual
runtime: each admitted request adds ``1 / weight`` to its key (weight 4 for contracted, 1 for
marketplace, DESIGN.md section 8), so a key that has had many turns waits behind one that has
had few. Ties go to the earlier arrival. A full queue refuses at once (``queue_full``); a wait
past ``queue_wait_s`` is refused too (``queue_wait_exceeded``): backpressure, never a hang.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import anyio

from aios_inference.errors import queue_full, queue_wait_exceeded
from aios_inference.models import Tier

__all__ = ["ModelGate", "Priority"]

_TIER_RANK: Final[dict[str, int]] = {"operator": 0, "contracted": 1, "marketplace": 2}
_TIER_WEIGHT: Final[dict[str, float]] = {"operator": 4.0, "contracted": 4.0, "marketplace": 1.0}
_KEYS_MAX: Final = 10_000


@dataclass(frozen=True)
class Priority:
    tier: Tier = "marketplace"
    fairness_key: str = ""


@dataclass(order=True)
class _Waiter:
    sort_key: tuple[int, float, int]
    event: anyio.Event = field(compare=False, default_factory=anyio.Event)
    granted: bool = field(compare=False, default=False)
    abandoned: bool = field(compare=False, default=False)


class ModelGate:
    """Admission for one model (name and limits fixed at creation)."""

    def __init__(self, model: str, concurrency_max: int, queue_depth_max: int) -> None:
        assert concurrency_max > 0, concurrency_max
        assert queue_depth_max >= 0, queue_depth_max
        self.model = model
        self.concurrency_max = concurrency_max
        self.queue_depth_max = queue_depth_max
        self.in_flight = 0
        self._heap: list[_Waiter] = []
        self._queued = 0
        self._arrivals = itertools.count()
        self._virtual_runtime: dict[str, float] = {}

    @property
    def queued(self) -> int:
        return self._queued

    @asynccontextmanager
    async def slot(self, priority: Priority, wait_s: float) -> AsyncIterator[None]:
        """Hold one of the model's slots for the body.

        Raises:
            ResourceExhausted: the queue is full (reason queue_full).
            RateLimited: no slot came free within ``wait_s`` (reason queue_wait_exceeded).
        """
        await self._acquire(priority, wait_s)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: Priority, wait_s: float) -> None:
        if self.in_flight < self.concurrency_max and self._queued == 0:
            self._admit(priority)
            return
        if self._queued >= self.queue_depth_max:
            raise queue_full(self.model, self.queue_depth_max)
        waiter = _Waiter(
            sort_key=(
                _TIER_RANK[priority.tier],
                self._virtual_runtime.get(priority.fairness_key, 0.0),
                next(self._arrivals),
            )
        )
        heapq.heappush(self._heap, waiter)
        self._queued += 1
        try:
            with anyio.move_on_after(wait_s):
                await waiter.event.wait()
        except BaseException:
            # Cancelled while waiting: leave the queue, or pass on a slot granted meanwhile.
            if waiter.granted:
                self._release()
            else:
                self._abandon(waiter)
            raise
        if not waiter.granted:
            self._abandon(waiter)
            raise queue_wait_exceeded(self.model, wait_s)
        self._admit(priority, counted=True)

    def _admit(self, priority: Priority, *, counted: bool = False) -> None:
        if not counted:
            self.in_flight += 1
        assert self.in_flight <= self.concurrency_max, (self.in_flight, self.concurrency_max)
        if len(self._virtual_runtime) >= _KEYS_MAX and priority.fairness_key not in (
            self._virtual_runtime
        ):
            self._virtual_runtime.clear()  # bounded memory; fairness restarts from zero
        runtime = self._virtual_runtime.get(priority.fairness_key, 0.0)
        self._virtual_runtime[priority.fairness_key] = runtime + 1.0 / _TIER_WEIGHT[priority.tier]

    def _abandon(self, waiter: _Waiter) -> None:
        waiter.abandoned = True
        self._queued -= 1
        assert self._queued >= 0, self._queued

    def _release(self) -> None:
        while self._heap:
            waiter = heapq.heappop(self._heap)
            if waiter.abandoned:
                continue
            # The slot passes straight to the waiter: in_flight stays the same.
            waiter.granted = True
            self._queued -= 1
            waiter.event.set()
            return
        self.in_flight -= 1
        assert self.in_flight >= 0, self.in_flight
