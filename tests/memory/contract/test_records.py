"""Record contract on both backends: types, validation, hashing, dedup, versions, concurrency,
lineage, deletes, decay, batches and ids (spec/memory.md section 6)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aios_memory.models import SaveItem
from aios_memory.schemas import TYPES
from aios_memory.service import MemoryService
from aios_shared.errors import Conflict, InvalidArgument, NotFound
from tests.memory.conftest import ServiceFactory
from tests.memory.support import FakeClock

pytestmark = pytest.mark.anyio

LOGIN = {
    "assertion": "Login test requires 60s timeout",
    "confidence": 0.95,
    "source": "test_run_2026_03_10",
}
LOGIN_HASH = "sha256:7bf36f33ceda1dbbc0bef4551e73d59dc9b79b8a14494a9466d05cff4acd1b31"


async def counts(service: MemoryService) -> tuple[Any, ...]:
    """Memories, versions, contents and full-text matches: what a refused write must not
    change."""
    dump = await service.store.dump()
    stats = await service.store.stats(None, service.now())
    return (len(dump["records"]), len(dump["versions"]), stats["contents"], stats["edges"])


@pytest.mark.parametrize("tier", ["persistent", "working"])
async def test_every_type_example_saves_and_reads_back_at_version_one(
    open_service: ServiceFactory, tier: str
) -> None:
    """Test 2: each of the 24 examples, in both tiers, reads back equal at version 1 with one
    head and the clock {actor: 1}."""
    async with open_service() as service:
        for name, info in TYPES.items():
            saved = await service.save(
                SaveItem(type=name, data=info.example, tier=tier, actor="agent-a")  # type: ignore[arg-type]
            )
            got = await service.get(saved.id)
            assert got.data == info.model.model_validate(info.example).model_dump(
                mode="json", exclude_none=True
            ), name
            assert (got.type, got.subcategory, got.version, got.heads, got.tier) == (
                name,
                info.subcategory,
                1,
                [1],
                tier,
            )
            assert got.vector_clock == {"agent-a": 1}


async def test_a_missing_required_field_is_a_schema_violation_that_writes_nothing(
    open_service: ServiceFactory,
) -> None:
    """Test 3: fact without assertion -> schema_violation at data.assertion; counts unchanged."""
    async with open_service() as service:
        before = await counts(service)
        with pytest.raises(InvalidArgument) as refused:
            await service.save(SaveItem(type="fact", data={"confidence": 0.5}))
        assert await counts(service) == before
    assert refused.value.details["reason"] == "schema_violation"
    assert refused.value.details["errors"][0]["path"] == "data.assertion"


@pytest.mark.parametrize(
    ("type_name", "data", "path"),
    [
        pytest.param("fact", {"assertion": "x", "confidence": 1.5}, "data.confidence", id="conf"),
        pytest.param("todo", {"title": "x", "priority": "urgent"}, "data.priority", id="prio"),
        pytest.param(
            "episodic",
            {"event": "x", "outcome": "success", "duration_ms": -1},
            "data.duration_ms",
            id="duration",
        ),
        pytest.param(
            "embedding",
            {
                "target_id": "00000000-0000-7000-8000-000000000001",
                "model": "m",
                "dimensions": 4,
                "vector": [1.0, 2.0, 3.0],
            },
            "data.vector",
            id="vector",
        ),
        pytest.param(
            "event",
            {"title": "x", "starts_at": "2026-03-10T12:00:00Z", "ends_at": "2026-03-10T11:00:00Z"},
            "data.ends_at",
            id="ends-before-start",
        ),
        pytest.param("issue", {"title": "x"}, "data.severity", id="severity"),
    ],
)
async def test_field_rules_are_checked_with_the_offending_path(
    open_service: ServiceFactory, type_name: str, data: dict[str, Any], path: str
) -> None:
    """Test 4: value rules of the schemas name the field that broke them."""
    async with open_service() as service:
        with pytest.raises(InvalidArgument) as refused:
            await service.save(SaveItem(type=type_name, data=data))
        assert await counts(service) == (0, 0, 0, 0)
    assert refused.value.details["reason"] == "schema_violation"
    assert refused.value.details["errors"][0]["path"] == path


async def test_unknown_fields_are_refused_but_attributes_are_free(
    open_service: ServiceFactory,
) -> None:
    """Test 5: a misspelled field is a schema violation; attributes {} is accepted."""
    async with open_service() as service:
        with pytest.raises(InvalidArgument) as refused:
            await service.save(SaveItem(type="fact", data={"asertion": "typo"}))
        saved = await service.save(
            SaveItem(type="fact", data={"assertion": "ok", "attributes": {"x": 1}})
        )
    assert refused.value.details["reason"] == "schema_violation"
    assert saved.data == {"assertion": "ok", "confidence": 1.0, "attributes": {"x": 1}}


async def test_unknown_types_list_the_allowed_ones_and_schema_means_schema_def(
    open_service: ServiceFactory,
) -> None:
    """Test 6: type memo -> unknown_type with the 24 names; schema is stored as schema_def."""
    async with open_service() as service:
        with pytest.raises(InvalidArgument) as refused:
            await service.save(SaveItem(type="memo", data={}))
        saved = await service.save(SaveItem(type="schema", data={"name": "users"}))
    assert refused.value.details["reason"] == "unknown_type"
    assert refused.value.details["allowed"] == list(TYPES)
    assert saved.type == "schema_def"


async def test_content_addresses_are_canonical(open_service: ServiceFactory) -> None:
    """Test 7: the spec's two hashes; key order, explicit defaults and NFD do not matter, a
    tag does."""
    cafe = "sha256:092ac61d643b5efea38cb9b20e37ce51a06731811d77e1bbdb2619bd16407ed4"
    async with open_service() as service:
        login = await service.save(
            SaveItem(type="fact", data=LOGIN, tags=["testing", "timeout", "login"])
        )
        variants: list[dict[str, Any]] = [
            {"assertion": "Café ☕ opens at 7"},
            {"confidence": 1.0, "assertion": "Café ☕ opens at 7"},
            {"assertion": "Cafe\u0301 ☕ opens at 7"},
        ]
        hashes = [
            (await service.save(SaveItem(type="fact", data=data, dedupe=False))).content_hash
            for data in variants
        ]
        tagged = await service.save(
            SaveItem(type="fact", data=variants[0], tags=["coffee"], dedupe=False)
        )
    assert login.content_hash == LOGIN_HASH
    assert hashes == [cafe, cafe, cafe]
    assert tagged.content_hash != cafe


async def test_equal_content_is_deduplicated_per_namespace_and_stored_once(
    open_service: ServiceFactory,
) -> None:
    """Test 8: same payload twice -> one id, deduplicated; another namespace -> new id but one
    body; dedupe false -> new id."""
    item = SaveItem(type="fact", data=LOGIN, tags=["login", "testing", "timeout"])
    async with open_service() as service:
        first = await service.save(item)
        second = await service.save(item)
        other = await service.save(item.model_copy(update={"namespace": "agent:x"}))
        forced = await service.save(item.model_copy(update={"dedupe": False}))
        stats = await service.store.stats(None, service.now())
    assert (second.id, second.deduplicated) == (first.id, True)
    assert other.id != first.id and not other.deduplicated
    assert forced.id not in (first.id, other.id)
    assert stats["contents"] == 1


async def test_updates_form_a_version_chain_and_unchanged_payloads_write_nothing(
    open_service: ServiceFactory,
) -> None:
    """Test 9: three updates give v1..v4 with parents [n-1]; history newest first; get(v2);
    an unchanged payload is changed false."""
    async with open_service() as service:
        saved = await service.save(SaveItem(type="fact", data={"assertion": "v1"}))
        for n in (2, 3, 4):
            await service.update(saved.id, data={"assertion": f"v{n}"})
        unchanged = await service.update(saved.id, data={"assertion": "v4"})
        history = await service.history(saved.id)
        second = await service.get(saved.id, version=2)
    assert [v.version for v in history.versions] == [4, 3, 2, 1]
    assert [v.parents for v in history.versions] == [[3], [2], [1], []]
    assert [v.is_head for v in history.versions] == [True, False, False, False]
    assert second.data == {"assertion": "v2", "confidence": 1.0}
    assert (unchanged.changed, unchanged.version) == (False, 4)


async def test_an_expected_version_mismatch_is_a_conflict_that_writes_nothing(
    open_service: ServiceFactory,
) -> None:
    """Test 10: expected_version 1 with head 2 -> conflict/version_mismatch, head_version 2."""
    async with open_service() as service:
        saved = await service.save(SaveItem(type="fact", data={"assertion": "a"}))
        await service.update(saved.id, data={"assertion": "b"})
        before = await counts(service)
        with pytest.raises(Conflict) as refused:
            await service.update(saved.id, data={"assertion": "c"}, expected_version=1)
        assert await counts(service) == before
    assert refused.value.details["reason"] == "version_mismatch"
    assert refused.value.details["head_version"] == 2


async def test_concurrent_writes_keep_both_heads_until_resolved(
    open_service: ServiceFactory,
) -> None:
    """Test 12: x and y both write from v1 -> heads [2, 3], conflicted, listed by conflicts;
    z resolves -> v4 after both with one head; an equal concurrent payload converges."""
    async with open_service() as service:
        saved = await service.save(SaveItem(type="fact", data={"assertion": "v1"}, actor="x"))
        v2 = await service.update(saved.id, data={"assertion": "by x"}, base_version=1, actor="x")
        same = await service.update(saved.id, data={"assertion": "by x"}, base_version=1, actor="y")
        v3 = await service.update(saved.id, data={"assertion": "by y"}, base_version=1, actor="y")
        listed = await service.conflicts()
        v4 = await service.resolve(saved.id, data={"assertion": "merged"}, actor="z")
        after = await service.get(saved.id)
    assert v2.vector_clock == {"x": 2}
    assert (same.changed, same.heads) == (False, [2])
    assert (v3.vector_clock, v3.conflicted, v3.heads) == ({"x": 1, "y": 1}, True, [2, 3])
    assert [(s.id, s.heads) for s in listed.siblings] == [(saved.id, [2, 3])]
    assert (v4.version, v4.parents, v4.vector_clock) == (4, [2, 3], {"x": 2, "y": 1, "z": 1})
    assert (after.heads, after.conflicted) == ([4], False)


async def test_under_the_reject_policy_a_concurrent_write_fails_and_writes_nothing(
    open_service: ServiceFactory,
) -> None:
    """Test 12: conflict/concurrent_write, nothing written."""
    async with open_service(conflict_policy="reject") as service:
        saved = await service.save(SaveItem(type="fact", data={"assertion": "v1"}, actor="x"))
        await service.update(saved.id, data={"assertion": "by x"}, base_version=1, actor="x")
        before = await counts(service)
        with pytest.raises(Conflict) as refused:
            await service.update(saved.id, data={"assertion": "by y"}, base_version=1, actor="y")
        assert await counts(service) == before
    assert refused.value.details["reason"] == "concurrent_write"


async def test_evolve_makes_a_linked_successor_and_leaves_the_parent(
    open_service: ServiceFactory,
) -> None:
    """Test 13: new id, evolved_into m->child, child clock after m's, reason correction."""
    async with open_service() as service:
        parent = await service.save(SaveItem(type="fact", data={"assertion": "old"}, actor="a"))
        child = await service.evolve(
            parent.id, reason="correction", data={"assertion": "new"}, actor="b"
        )
        unchanged = await service.get(parent.id)
        history = await service.history(child.id)
        edges = await service.neighbors(parent.id, direction="out")
    assert child.id != parent.id
    assert child.vector_clock == {"a": 1, "b": 1}
    assert unchanged.version == 1 and unchanged.data == parent.data
    assert [v.reason for v in history.versions] == ["correction"]
    assert [(e.from_id, e.to_id, e.relation) for e in edges.edges] == [
        (parent.id, child.id, "evolved_into")
    ]


async def test_lineage_follows_the_papers_appendix_chain(open_service: ServiceFactory) -> None:
    """Test 14: m0 -> m1 -> (m2, m2') -> m3 = merge; ancestors and descendants by depth."""
    async with open_service() as service:
        m0 = (await service.save(SaveItem(type="fact", data={"assertion": "m0"}))).id
        m1 = (await service.evolve(m0, reason="observation", data={"assertion": "m1"})).id
        m2 = (await service.evolve(m1, reason="inference", data={"assertion": "m2"})).id
        m2b = (await service.evolve(m1, reason="observation", data={"assertion": "m2b"})).id
        merged = await service.merge([m2, m2b], data={"assertion": "m3"})
        m3 = merged.id
        up = await service.lineage(m3, direction="ancestors")
        down = await service.lineage(m0, direction="descendants")
        clocks = {m: (await service.get(m)).vector_clock for m in (m2, m2b, m3)}
        out = await service.neighbors(m3, direction="out", relations=["derived_from"])
        reason = (await service.history(m3)).versions[0].reason
    assert [(e.id, e.depth) for e in up.ancestors] == [(m2, 1), (m2b, 1), (m1, 2), (m0, 3)]
    assert [(e.id, e.depth) for e in down.descendants] == [(m1, 1), (m2, 2), (m2b, 2), (m3, 3)]
    from aios_memory.clocks import compare

    assert compare(clocks[m3], clocks[m2]) == "after"
    assert compare(clocks[m3], clocks[m2b]) == "after"
    assert sorted((e.from_id, e.to_id) for e in out.edges) == [(m3, m2), (m3, m2b)]
    assert reason == "correction"


LUCENE_CORPUS = [
    ("The login page requires a 60 second timeout", []),
    ("Login retries are limited; the timeout of the session is 5 minutes", []),
    ("Lucene powers the full-text index of Neo4j", []),
    ("We compared Lucene with SQLite FTS5", []),
    ("The graph of memories has typed edges", []),
    ("Unrelated note about coffee", ["graph"]),
    ("An index speeds up reads", []),
]


async def test_full_text_ranking_filters_and_query_rules(open_service: ServiceFactory) -> None:
    """Test 22: exact matches, ranking, text over tags, stemming, deleted only on request, type
    filter, query syntax taken as words, empty and too-long queries refused."""
    async with open_service() as service:
        ids = []
        for text, tags in LUCENE_CORPUS:
            saved = await service.save(SaveItem(type="fact", data={"assertion": text}, tags=tags))
            ids.append(saved.id)
        decision = await service.save(
            SaveItem(type="decision", data={"decision": "Use Lucene", "rationale": "speed"})
        )

        async def found(query: str, **arguments: Any) -> list[str]:
            return [hit.id for hit in (await service.search(query, **arguments)).hits]

        lucene = await found("lucene", types=["fact"])
        login = await found("login timeout")
        graph = await found("graph")
        indexes = await found("indexes")
        await service.delete(ids[2])
        after_delete = await found("lucene", types=["fact"])
        with_deleted = await found("lucene", types=["fact"], include_deleted=True)
        syntax = await found('foo AND (bar"')
        with pytest.raises(InvalidArgument) as empty:
            await service.search("")
        with pytest.raises(InvalidArgument) as long_query:
            await service.search("x" * 1001)
    assert sorted(lucene) == sorted([ids[2], ids[3]])
    assert login[0] == ids[0]
    assert graph == [ids[4], ids[5]]
    assert ids[6] in indexes
    assert after_delete == [ids[3]]
    assert sorted(with_deleted) == sorted([ids[2], ids[3]])
    assert decision.id not in lucene
    assert syntax == []
    assert empty.value.details["reason"] == "empty_query"
    assert long_query.value.details["reason"] == "query_too_long"


async def test_delete_restore_and_purge_lifecycle(open_service: ServiceFactory) -> None:
    """Test 23: deleted -> not_found/deleted but in history, lineage and neighbors
    (include_deleted); update refused; restore adds a version; purge drops bodies and FTS."""
    async with open_service() as service:
        other = await service.save(SaveItem(type="fact", data={"assertion": "anchor"}))
        saved = await service.save(SaveItem(type="fact", data={"assertion": "zebra crossing"}))
        await service.link(other.id, saved.id, "references")
        await service.delete(saved.id)
        with pytest.raises(NotFound) as deleted:
            await service.get(saved.id)
        history = await service.history(saved.id)
        shown = await service.neighbors(other.id, include_deleted=True)
        with pytest.raises(NotFound):
            await service.update(saved.id, data={"assertion": "x"})
        restored = await service.restore(saved.id)
        visible = await service.get(saved.id)
        await service.delete(saved.id, purge=True)
        purged = await service.get(saved.id, include_deleted=True)
        hits = await service.search("zebra", include_deleted=True)
        stats = await service.store.stats(None, service.now())
    assert deleted.value.details["reason"] == "deleted"
    assert [v.version for v in history.versions] == [2, 1]
    assert [n.deleted for n in shown.nodes] == [False, True]
    assert restored.version == 3 and visible.deleted_at is None
    assert purged.purged and purged.data is None
    assert hits.hits == []
    assert stats["contents"] == 1


async def test_a_log_decays_after_seven_days_but_a_fact_never_expires(
    open_service: ServiceFactory,
) -> None:
    """Test 24: log expires_at = created + 7 d; a sweep after that tombstones it with reason
    decay; a fact has no expires_at."""
    clock = FakeClock()
    async with open_service(clock=clock) as service:
        log = await service.save(SaveItem(type="log", data={"level": "info", "message": "hi"}))
        fact = await service.save(SaveItem(type="fact", data={"assertion": "forever"}))
        clock.advance(7 * 86_400)
        decayed = await service.sweep_persistent()
        history = await service.history(log.id)
    assert log.expires_at == "2026-03-17T12:00:00.000000Z"
    assert fact.expires_at is None
    assert decayed == 1
    assert history.versions[0].reason == "decay"


async def test_batches_are_bounded_atomic_and_idempotent(open_service: ServiceFactory) -> None:
    """Test 25: 501 items -> too_many_items; item 7 invalid -> index 7, nothing written; an
    idempotency key replays its first result and refuses another payload."""
    async with open_service() as service:
        with pytest.raises(InvalidArgument) as too_many:
            await service.save_many(
                [SaveItem(type="fact", data={"assertion": str(i)}) for i in range(501)]
            )
        items = [SaveItem(type="fact", data={"assertion": str(i)}) for i in range(10)]
        items[7] = SaveItem(type="fact", data={"confidence": 2})
        with pytest.raises(InvalidArgument) as bad_item:
            await service.save_many(items)
        assert await counts(service) == (0, 0, 0, 0)
        keyed = SaveItem(type="fact", data={"assertion": "once"}, idempotency_key="k1")
        first = await service.save(keyed)
        again = await service.save(keyed)
        with pytest.raises(Conflict) as reused:
            await service.save(keyed.model_copy(update={"data": {"assertion": "twice"}}))
    assert too_many.value.details["reason"] == "too_many_items"
    assert bad_item.value.details["index"] == 7
    assert again == first
    assert reused.value.details["reason"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    "bad_id",
    ["abc", "00000000-0000-7000-8000-00000000000A", "00000000-0000-7000-8000-0000000000001"],
)
async def test_malformed_ids_are_invalid_arguments(
    open_service: ServiceFactory, bad_id: str
) -> None:
    """Test 26: "abc", upper case, 37 characters -> invalid_id (well-formed unknown ids are
    not_found)."""
    async with open_service() as service:
        with pytest.raises(InvalidArgument) as refused:
            await service.get(bad_id)
        with pytest.raises(NotFound):
            await service.get("00000000-0000-7000-8000-00000000000a")
    assert refused.value.details["reason"] == "invalid_id"


async def test_oversized_content_and_too_many_tags_are_refused_without_a_write(
    open_service: ServiceFactory,
) -> None:
    """Test 26: a payload of 256 KiB + 1 byte -> content_too_large with limit and size; 33
    tags -> invalid_tag; nothing written."""
    async with open_service() as service:
        empty = SaveItem(type="fact", data={"assertion": ""[:0] or "x"})
        base = len(empty.model_dump_json())
        _ = base
        overhead = len('{"data":{"assertion":"","confidence":1},"tags":[],"type":"fact"}')
        big = "x" * (256 * 1024 + 1 - overhead)
        with pytest.raises(InvalidArgument) as too_large:
            await service.save(SaveItem(type="fact", data={"assertion": big}))
        with pytest.raises(InvalidArgument) as tags:
            await service.save(
                SaveItem(type="fact", data={"assertion": "t"}, tags=[f"t{i}" for i in range(33)])
            )
        assert await counts(service) == (0, 0, 0, 0)
    assert too_large.value.details["reason"] == "content_too_large"
    assert too_large.value.details["limit"] == 256 * 1024
    assert too_large.value.details["size"] == 256 * 1024 + 1
    assert tags.value.details["reason"] == "invalid_tag"


async def test_server_ids_are_uuid7_in_creation_order_and_client_ids_are_checked(
    open_service: ServiceFactory,
) -> None:
    """Test 31: canonical UUIDv7 sorting by creation; created_at <= updated_at; an existing
    client id with another payload -> conflict/id_exists."""
    from aios_memory.service import uuid7_generator

    async with open_service(ids=uuid7_generator()) as service:
        saved = [
            await service.save(SaveItem(type="fact", data={"assertion": f"n{i}"}))
            for i in range(20)
        ]
        await service.update(saved[0].id, data={"assertion": "changed"})
        first = await service.get(saved[0].id)
        with pytest.raises(Conflict) as taken:
            await service.save(SaveItem(type="fact", data={"assertion": "other"}, id=saved[1].id))
    ids = [s.id for s in saved]
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids
    )
    assert ids == sorted(ids)
    assert first.created_at <= first.updated_at
    assert taken.value.details["reason"] == "id_exists"
