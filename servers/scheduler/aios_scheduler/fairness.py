"""Credit-weighted virtual runtime and the derived ready index (spec/scheduler.md section 2.4).

The index is rebuilt from the database at start-up and never authoritative. Keys are computed
from the clients' *live* avruntime at dispatch time (fixes D1): a client's heap entry is
replaced whenever its avruntime or its oldest queued job changes, and stale entries are skipped.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from aios_scheduler.config import TierPolicy
from aios_scheduler.models import Tier

__all__ = ["CR0", "TIER_WEIGHTS", "QueueItem", "ReadyIndex", "increment"]

CR0: Final = 1000.0
TIER_WEIGHTS: Final[dict[Tier, float]] = {"contracted": 4.0, "marketplace": 1.0}
_TIER_RANK: Final[dict[Tier, int]] = {"contracted": 0, "marketplace": 1}


def increment(cost: float, credits: float, tier: Tier, beta: float, reputation: float) -> float:
    """avruntime += kappa * cr0 / (max(cr, 1) * w(tier) * (1 + beta * R_A))."""
    assert cost > 0, cost
    weight = TIER_WEIGHTS[tier] * (1.0 + beta * reputation)
    return cost * CR0 / (max(credits, 1.0) * weight)


@dataclass(slots=True)
class QueueItem:
    """What dispatch needs to know of one pending job."""

    job_id: str
    client_id: str
    seq: int
    cost: float
    required_capabilities: frozenset[str]
    task_domain: str | None
    pinned_agent_id: str | None
    excluded_agents: frozenset[str]
    waiting_on: set[str]
    not_before: int

    def eligible(
        self, agent_id: str, capabilities: frozenset[str], domains: frozenset[str], now: int
    ) -> bool:
        return (
            not self.waiting_on
            and self.not_before <= now
            and self.required_capabilities <= capabilities
            and (self.task_domain is None or self.task_domain in domains)
            and (self.pinned_agent_id is None or self.pinned_agent_id == agent_id)
            and agent_id not in self.excluded_agents
        )


Eligible = Callable[[QueueItem], bool]
HeapEntry = tuple[int, float, int, str]


@dataclass
class ReadyIndex:
    """Per-client FIFO of pending jobs plus a heap of clients keyed by the tier policy."""

    policy: TierPolicy
    items: dict[str, QueueItem] = field(default_factory=dict)
    _queues: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    _heap: list[HeapEntry] = field(default_factory=list)
    _entries: dict[str, HeapEntry] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def queued(self, client_id: str) -> int:
        return len(self._queues.get(client_id, ()))

    def clients_with_queue(self) -> Iterable[str]:
        return (client for client, queue in self._queues.items() if queue)

    def add(self, item: QueueItem, tier: Tier, avruntime: float) -> None:
        assert item.job_id not in self.items, item.job_id
        self.items[item.job_id] = item
        queue = self._queues.setdefault(item.client_id, [])
        bisect.insort(queue, (item.seq, item.job_id))
        self.rekey(item.client_id, tier, avruntime)

    def remove(self, job_id: str, tier: Tier, avruntime: float) -> QueueItem | None:
        item = self.items.pop(job_id, None)
        if item is None:
            return None
        queue = self._queues[item.client_id]
        position = bisect.bisect_left(queue, (item.seq, item.job_id))
        assert queue[position] == (item.seq, item.job_id), item
        del queue[position]
        self.rekey(item.client_id, tier, avruntime)
        return item

    def rekey(self, client_id: str, tier: Tier, avruntime: float) -> None:
        queue = self._queues.get(client_id)
        if not queue:
            self._entries.pop(client_id, None)
            self._queues.pop(client_id, None)
            return
        rank = _TIER_RANK[tier] if self.policy == "strict" else 0
        entry = (rank, avruntime, queue[0][0], client_id)
        if self._entries.get(client_id) != entry:
            self._entries[client_id] = entry
            heapq.heappush(self._heap, entry)
        if len(self._heap) > 4 * len(self._entries) + 64:
            self._heap = list(self._entries.values())
            heapq.heapify(self._heap)

    def select(self, eligible: Eligible) -> QueueItem | None:
        """The oldest eligible job of the client with the smallest key; keys are exact: a
        client's key uses the seq of its oldest *eligible* job."""
        best: tuple[tuple[int, float, int], QueueItem] | None = None
        popped: list[HeapEntry] = []
        while self._heap:
            entry = self._heap[0]
            rank, avruntime, head_seq, client_id = entry
            if self._entries.get(client_id) != entry:
                heapq.heappop(self._heap)
                continue
            if best is not None and (rank, avruntime, head_seq) > best[0]:
                break
            popped.append(heapq.heappop(self._heap))
            for seq, job_id in self._queues[client_id]:
                item = self.items[job_id]
                if eligible(item):
                    key = (rank, avruntime, seq)
                    if best is None or key < best[0]:
                        best = (key, item)
                    break
        for entry in popped:
            heapq.heappush(self._heap, entry)
        return None if best is None else best[1]

    def ordered_clients(self) -> list[HeapEntry]:
        return sorted(self._entries.values())

    def queue_of(self, client_id: str) -> list[str]:
        return [job_id for _, job_id in self._queues.get(client_id, ())]
