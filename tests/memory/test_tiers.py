"""Working tier, read cache, TTL and promotion (spec/memory.md section 2.7; tests 15, 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios_memory.config import MemoryLimits, MemorySettings
from aios_memory.models import SaveItem
from aios_memory.service import MemoryService
from aios_memory.store_sqlite import SqliteStore
from aios_shared.errors import InvalidArgument, NotFound
from tests.memory.support import FakeClock

pytestmark = pytest.mark.anyio


def settings_for(tmp_path: Path, **limits: int) -> MemorySettings:
    return MemorySettings(home=tmp_path, node_id="node", limits=MemoryLimits(**limits))


async def test_a_working_memory_expires_exactly_at_its_ttl(tmp_path: Path) -> None:
    """Test 15: readable at t+59 s; at t+60 s not_found/expired and absent from search and list;
    a sweep empties the tier; ttl 0 and 604801 are out of range."""
    clock = FakeClock()
    settings = settings_for(tmp_path)
    async with MemoryService.open(settings, SqliteStore(tmp_path / "m.db"), clock=clock) as service:
        saved = await service.save(
            SaveItem(type="fact", data={"assertion": "ephemeral kiwi"}, tier="working", ttl_s=60)
        )
        clock.advance(59)
        assert (await service.get(saved.id)).id == saved.id
        clock.advance(1)
        with pytest.raises(NotFound) as expired:
            await service.get(saved.id)
        hits = await service.search("kiwi")
        listed = await service.list_records()
        swept = await service.sweep_working()
        stats = await service.stats()
        for ttl in (0, 604_801):
            with pytest.raises(InvalidArgument) as refused:
                await service.save(
                    SaveItem(type="fact", data={"assertion": "x"}, tier="working", ttl_s=ttl)
                )
            assert refused.value.details["reason"] == "ttl_out_of_range"
    assert expired.value.details["reason"] == "expired"
    assert hits.hits == [] and listed.records == []
    assert swept == 1
    assert stats.by_tier["working"] == 0


async def test_the_budget_evicts_cache_first_then_lru_and_promotes_on_request(
    tmp_path: Path,
) -> None:
    """Test 16: with 3 items max, cached records go before working memories, then the least
    recently used working memory; on_evict promote writes it persistently instead."""
    settings = settings_for(tmp_path, working_items_max=3)
    async with MemoryService.open(settings, SqliteStore(tmp_path / "m.db")) as service:
        stored = await service.save(SaveItem(type="fact", data={"assertion": "durable"}))
        await service.get(stored.id)  # now cached
        assert service.working.cache
        keeper = await service.save(
            SaveItem(type="fact", data={"assertion": "keeper"}, tier="working", on_evict="promote")
        )
        first = await service.save(SaveItem(type="fact", data={"assertion": "a"}, tier="working"))
        second = await service.save(SaveItem(type="fact", data={"assertion": "b"}, tier="working"))
        assert not service.working.cache  # the cache entry went first
        await service.get(first.id)  # first is now more recent than keeper
        third = await service.save(SaveItem(type="fact", data={"assertion": "c"}, tier="working"))
        promoted = await service.get(keeper.id)
        await service.get(first.id)
        fourth = await service.save(SaveItem(type="fact", data={"assertion": "d"}, tier="working"))
        with pytest.raises(NotFound):
            await service.get(second.id)
        survivors = [await service.get(m.id) for m in (first, third, fourth)]
    assert promoted.tier == "persistent"
    assert [m.tier for m in survivors] == ["working"] * 3
    # The read of the promoted record was cached and, the budget being full, evicted at once.
    assert service.working.evictions == {"cache": 2, "working": 2}


async def test_a_promoted_memory_survives_a_restart_and_an_unpromoted_one_does_not(
    tmp_path: Path,
) -> None:
    """Test 16: promote keeps id, versions and clock across a restart; working is volatile."""
    settings = settings_for(tmp_path)
    async with MemoryService.open(settings, SqliteStore(tmp_path / "m.db")) as service:
        kept = await service.save(
            SaveItem(type="fact", data={"assertion": "v1"}, tier="working", actor="a")
        )
        await service.update(kept.id, data={"assertion": "v2"}, actor="a")
        lost = await service.save(SaveItem(type="fact", data={"assertion": "gone"}, tier="working"))
        promoted = await service.promote(kept.id)
    async with MemoryService.open(settings, SqliteStore(tmp_path / "m.db")) as service:
        again = await service.get(kept.id)
        history = await service.history(kept.id)
        with pytest.raises(NotFound):
            await service.get(lost.id)
    assert promoted.expires_at is None
    assert (again.tier, again.version, again.vector_clock) == ("persistent", 2, {"a": 2})
    assert [v.version for v in history.versions] == [2, 1]


async def test_a_write_invalidates_the_cached_copy_in_the_same_step(tmp_path: Path) -> None:
    """Section 2.7: write-through, so a tombstone is never undone by a stale cached read."""
    settings = settings_for(tmp_path)
    async with MemoryService.open(settings, SqliteStore(tmp_path / "m.db")) as service:
        saved = await service.save(SaveItem(type="fact", data={"assertion": "x"}))
        await service.get(saved.id)
        await service.delete(saved.id)
        with pytest.raises(NotFound) as deleted:
            await service.get(saved.id)
    assert deleted.value.details["reason"] == "deleted"
