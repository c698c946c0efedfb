"""The per-model gate alone: ordering by tier and fairness, bounded waits, cancellation."""

from __future__ import annotations

import anyio
import pytest

from aios_inference.gate import ModelGate, Priority
from aios_shared.errors import RateLimited, ResourceExhausted
from tests.helpers import poll_until

pytestmark = pytest.mark.anyio


async def _wait_queued(gate: ModelGate, count: int) -> None:
    async def reached() -> bool | None:
        return True if gate.queued == count else None

    await poll_until(reached, deadline_s=5, interval_s=0.001)


async def test_within_a_tier_a_key_that_had_fewer_turns_goes_first() -> None:
    """Fairness: after key 'busy' took a turn, a waiting 'quiet' key is served before busy's
    second request even though busy's arrived first (virtual runtime, DESIGN.md section 8)."""
    gate = ModelGate("m", concurrency_max=1, queue_depth_max=4)
    served: list[str] = []
    release = anyio.Event()

    async def take(key: str, hold: bool) -> None:
        async with gate.slot(Priority("marketplace", key), wait_s=5):
            served.append(key)
            if hold:
                await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(take, "busy", True)
        await _wait_in_flight(gate)
        group.start_soon(take, "busy", False)
        await _wait_queued(gate, 1)
        group.start_soon(take, "quiet", False)
        await _wait_queued(gate, 2)
        release.set()
    assert served == ["busy", "quiet", "busy"]
    assert gate.in_flight == 0


async def _wait_in_flight(gate: ModelGate) -> None:
    async def busy() -> bool | None:
        return True if gate.in_flight else None

    await poll_until(busy, deadline_s=5, interval_s=0.001)


async def test_a_full_queue_refuses_at_once_and_a_long_wait_is_rate_limited() -> None:
    """Backpressure, never a hang: past queue_depth_max the call is refused immediately with
    resource_exhausted; a waiter whose wait runs out gets rate_limited and leaves the queue."""
    gate = ModelGate("m", concurrency_max=1, queue_depth_max=1)
    release = anyio.Event()
    outcomes: list[str] = []

    async def holder() -> None:
        async with gate.slot(Priority(), wait_s=5):
            await release.wait()

    async def waiter() -> None:
        try:
            async with gate.slot(Priority(), wait_s=0.05):
                outcomes.append("served")
        except RateLimited as error:
            outcomes.append(error.details["reason"])

    async with anyio.create_task_group() as group:
        group.start_soon(holder)
        await _wait_in_flight(gate)
        group.start_soon(waiter)
        await _wait_queued(gate, 1)
        with pytest.raises(ResourceExhausted) as refused:
            async with gate.slot(Priority(), wait_s=5):
                pass
        await _wait_queued(gate, 0)
        release.set()
    assert refused.value.details["reason"] == "queue_full"
    assert outcomes == ["queue_wait_exceeded"]
    assert (gate.in_flight, gate.queued) == (0, 0)


async def test_a_cancelled_waiter_leaves_the_queue_and_the_slot_passes_on() -> None:
    """Cancellation while queued frees the queue place; the next waiter still gets the slot."""
    gate = ModelGate("m", concurrency_max=1, queue_depth_max=2)
    release = anyio.Event()
    served: list[str] = []

    async def take(name: str, hold: bool) -> None:
        async with gate.slot(Priority(fairness_key=name), wait_s=5):
            served.append(name)
            if hold:
                await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(take, "first", True)
        await _wait_in_flight(gate)
        with anyio.CancelScope() as doomed_scope:
            async with anyio.create_task_group() as doomed:
                doomed.start_soon(take, "cancelled", False)
                await _wait_queued(gate, 1)
                group.start_soon(take, "last", False)
                await _wait_queued(gate, 2)
                doomed_scope.cancel()
        await _wait_queued(gate, 1)
        release.set()
    assert served == ["first", "last"]
    assert (gate.in_flight, gate.queued) == (0, 0)
