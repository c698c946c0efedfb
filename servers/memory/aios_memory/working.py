"""The working tier and the read cache (spec/memory.md section 2.7).

Working memories live in this process only (gone after a restart by design), each with a TTL.
The read cache keeps recently read persistent records in the same budget. Over budget, cache
entries go first (they are recoverable), then working memories, least recently used first; a
working memory saved with ``on_evict="promote"`` is handed back to be written persistently.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from aios_memory.config import MemoryLimits
from aios_memory.store import Content, StoredMemory, StoredVersion

__all__ = ["WorkingEntry", "WorkingTier", "WorkingTx"]

OnEvict = Literal["drop", "promote"]


@dataclass
class WorkingEntry:
    memory: StoredMemory
    versions: dict[int, StoredVersion]
    contents: dict[str, str]
    on_evict: OnEvict = "drop"
    size_bytes: int = 0

    def measure(self) -> None:
        self.size_bytes = sum(len(body) for body in self.contents.values()) + 512 * len(
            self.versions
        )


@dataclass
class WorkingTier:
    """Working memories and cached persistent records under one item and byte budget."""

    limits: MemoryLimits
    entries: OrderedDict[str, WorkingEntry] = field(default_factory=OrderedDict)
    cache: OrderedDict[str, tuple[StoredMemory, int]] = field(default_factory=OrderedDict)
    evictions: dict[str, int] = field(default_factory=lambda: {"cache": 0, "working": 0})
    cache_enabled: bool = True
    writes: int = 0
    pending_promotions: list[WorkingEntry] = field(default_factory=list)
    _bytes: int = 0

    # ---- working memories ---------------------------------------------------------------------

    def peek(self, memory_id: str) -> WorkingEntry | None:
        return self.entries.get(memory_id)

    def touch(self, memory_id: str) -> WorkingEntry | None:
        entry = self.entries.get(memory_id)
        if entry is not None:
            self.entries.move_to_end(memory_id)
        return entry

    def put(self, entry: WorkingEntry) -> list[WorkingEntry]:
        """Insert or replace; evicted entries whose ``on_evict`` is ``promote`` are returned and
        queued in ``pending_promotions`` for the service to write persistently."""
        previous = self.entries.pop(entry.memory.id, None)
        if previous is not None:
            self._bytes -= previous.size_bytes
        entry.measure()
        self.entries[entry.memory.id] = entry
        self._bytes += entry.size_bytes
        self.writes += 1
        return self._enforce_budget(keep=entry.memory.id)

    def remove(self, memory_id: str) -> WorkingEntry | None:
        entry = self.entries.pop(memory_id, None)
        if entry is not None:
            self._bytes -= entry.size_bytes
        return entry

    def expired(self, now: str) -> list[str]:
        return [
            memory_id
            for memory_id, entry in self.entries.items()
            if entry.memory.expires_at is not None and entry.memory.expires_at <= now
        ]

    # ---- read cache ---------------------------------------------------------------------------

    def cache_get(self, memory_id: str) -> StoredMemory | None:
        if not self.cache_enabled:
            return None
        item = self.cache.get(memory_id)
        if item is None:
            return None
        self.cache.move_to_end(memory_id)
        return item[0]

    def cache_put(self, memory: StoredMemory, generation: int) -> list[WorkingEntry]:
        """Cache a record read at ``generation``; skipped if any write happened since, so a
        stale read can never be cached after the write that made it stale."""
        if not self.cache_enabled or generation != self.writes:
            return []
        size = len(json.dumps(memory.data)) + 512
        previous = self.cache.pop(memory.id, None)
        if previous is not None:
            self._bytes -= previous[1]
        self.cache[memory.id] = (memory, size)
        self._bytes += size
        return self._enforce_budget(keep=None)

    def invalidate(self, memory_id: str) -> None:
        """Write-through: a write to an id drops its cached copy in the same step."""
        self.writes += 1
        item = self.cache.pop(memory_id, None)
        if item is not None:
            self._bytes -= item[1]

    # ---- budget -------------------------------------------------------------------------------

    @property
    def items(self) -> int:
        return len(self.entries) + len(self.cache)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _over(self) -> bool:
        limits = self.limits
        return self.items > limits.working_items_max or self._bytes > limits.working_bytes_max

    def _enforce_budget(self, keep: str | None) -> list[WorkingEntry]:
        promoted: list[WorkingEntry] = []
        while self._over() and self.cache:
            _, (_, size) = self.cache.popitem(last=False)
            self._bytes -= size
            self.evictions["cache"] += 1
        while self._over():
            victim = next((key for key in self.entries if key != keep), None)
            if victim is None:
                break
            entry = self.entries.pop(victim)
            self._bytes -= entry.size_bytes
            self.evictions["working"] += 1
            if entry.on_evict == "promote":
                promoted.append(entry)
        self.pending_promotions.extend(promoted)
        return promoted


class WorkingTx:
    """The ``StoreTx`` subset the service's write paths need, over one working entry set.

    There is no rollback: the service computes every change before the single mutating call.
    """

    def __init__(self, tier: WorkingTier) -> None:
        self._tier = tier

    async def get(self, memory_id: str) -> StoredMemory | None:
        entry = self._tier.peek(memory_id)
        return None if entry is None else entry.memory

    async def heads(self, memory_id: str) -> list[StoredVersion]:
        entry = self._tier.peek(memory_id)
        assert entry is not None, memory_id
        return sorted((v for v in entry.versions.values() if v.is_head), key=lambda v: v.version)

    async def get_version(self, memory_id: str, version: int) -> StoredVersion | None:
        entry = self._tier.peek(memory_id)
        return None if entry is None else entry.versions.get(version)

    async def content(self, content_hash: str) -> str | None:
        for entry in self._tier.entries.values():
            if content_hash in entry.contents:
                return entry.contents[content_hash]
        return None

    async def find_by_hash(
        self, namespace: str, type_name: str, content_hash: str, now: str
    ) -> str | None:
        for memory_id, entry in self._tier.entries.items():
            memory = entry.memory
            if (
                memory.namespace == namespace
                and memory.type == type_name
                and memory.content_hash == content_hash
                and memory.live(now)
            ):
                return memory_id
        return None

    def create_entry(
        self,
        memory: StoredMemory,
        versions: Sequence[StoredVersion],
        contents: Sequence[Content],
        on_evict: OnEvict,
    ) -> list[WorkingEntry]:
        entry = WorkingEntry(
            memory=memory,
            versions={v.version: v for v in versions},
            contents={c.hash: c.body for c in contents},
            on_evict=on_evict,
        )
        return self._tier.put(entry)

    async def append_version(
        self, memory: StoredMemory, version: StoredVersion, content: Content
    ) -> None:
        entry = self._tier.peek(memory.id)
        assert entry is not None, memory.id
        for parent in version.parents:
            entry.versions[parent] = replace(entry.versions[parent], is_head=False)
        entry.versions[version.version] = version
        entry.contents[content.hash] = content.body
        entry.memory = memory
        self._tier.put(entry)
