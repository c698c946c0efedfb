"""SQLite-versus-Neo4j parity replay (spec/memory.md section 6, test 29): one seeded script of
2,000 random operations on both backends gives identical outcomes, records, edges,
neighbourhoods, lineage, paths, conflicts, digests and search result sets."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from aios_memory.config import MemorySettings
from aios_memory.models import SaveItem
from aios_memory.service import MemoryService
from aios_memory.store import RELATIONS
from aios_memory.store_sqlite import SqliteStore
from aios_shared.errors import AiosError
from tests.memory.support import GraphServer, TickingClock, neo4j_store, reset_neo4j, sequential_ids

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

OPERATIONS = 2_000
WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


@asynccontextmanager
async def both(tmp_path: Path, server: GraphServer) -> AsyncIterator[list[MemoryService]]:
    settings = MemorySettings(home=tmp_path, node_id="replayer", neo4j_exclusive=True)
    await reset_neo4j(server)
    async with (
        MemoryService.open(
            settings, SqliteStore(tmp_path / "p.db"), clock=TickingClock(), ids=sequential_ids()
        ) as sqlite,
        MemoryService.open(
            settings, neo4j_store(server), clock=TickingClock(), ids=sequential_ids()
        ) as neo4j,
    ):
        yield [sqlite, neo4j]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))


def next_operation(rng: random.Random, ids: list[str]) -> tuple[str, dict[str, Any]]:
    """A random operation on the ids created so far (some deliberately invalid)."""
    roll = rng.random()
    if not ids or roll < 0.25:
        return "save", {
            "item": SaveItem(
                type=rng.choice(["fact", "fact", "decision"]),
                data={"assertion": sentence(rng)}
                if rng.random() < 0.7
                else {"decision": sentence(rng), "rationale": sentence(rng)},
                tags=rng.sample(WORDS[:6], rng.randint(0, 2)),
                actor=rng.choice(["a", "b", "c"]),
            )
        }
    pick = rng.choice
    if roll < 0.45:
        return "update", {
            "memory_id": pick(ids),
            "data_patch": {"assertion": sentence(rng)},
            "base_version": rng.choice([None, None, 1, 2]),
            "actor": pick(["a", "b", "c"]),
        }
    if roll < 0.52:
        return "evolve", {"memory_id": pick(ids), "reason": pick(["observation", "inference"])}
    if roll < 0.57:
        return "merge", {"ids": rng.sample(ids, min(len(ids), rng.randint(2, 3)))}
    if roll < 0.62:
        return "resolve", {"memory_id": pick(ids), "keep_version": rng.randint(1, 3)}
    if roll < 0.82:
        return "link", {"a": pick(ids), "b": pick(ids), "relation": pick(RELATIONS)}
    if roll < 0.88:
        return "unlink", {"a": pick(ids), "b": pick(ids), "relation": pick([None, *RELATIONS])}
    if roll < 0.95:
        return "delete", {"memory_id": pick(ids)}
    return "restore", {"memory_id": pick(ids)}


async def apply(service: MemoryService, name: str, arguments: dict[str, Any]) -> Any:
    """Run one operation; the outcome is its result or its error code and reason."""
    try:
        result: BaseModel
        if name == "save":
            result = await service.save(arguments["item"])
        elif name == "update":
            memory_id = arguments.pop("memory_id")
            result = await service.update(memory_id, **arguments)
        elif name == "evolve":
            result = await service.evolve(arguments["memory_id"], reason=arguments["reason"])
        elif name == "merge":
            result = await service.merge(arguments["ids"], data={"assertion": "merged"})
        elif name == "resolve":
            result = await service.resolve(
                arguments["memory_id"], keep_version=arguments["keep_version"]
            )
        elif name == "link":
            result = await service.link(arguments["a"], arguments["b"], arguments["relation"])
        elif name == "unlink":
            result = await service.unlink(arguments["a"], arguments["b"], arguments["relation"])
        elif name == "delete":
            result = await service.delete(arguments["memory_id"])
        else:
            result = await service.restore(arguments["memory_id"])
    except AiosError as error:
        return (error.code, error.details.get("reason"))
    return result.model_dump(mode="json")


async def test_a_seeded_replay_gives_identical_state_on_sqlite_and_neo4j(
    tmp_path: Path, graph_server: GraphServer
) -> None:
    """Every outcome, then every read of the final state, must agree between the backends."""
    rng = random.Random(29)
    ids: list[str] = []
    async with both(tmp_path, graph_server) as services:
        for step in range(OPERATIONS):
            name, arguments = next_operation(rng, ids)
            outcomes = [await apply(s, name, dict(arguments)) for s in services]
            assert outcomes[0] == outcomes[1], (step, name, arguments)
            if isinstance(outcomes[0], dict) and name in ("save", "evolve", "merge"):
                if outcomes[0]["id"] not in ids:
                    ids.append(outcomes[0]["id"])
        digests = [await s.digest() for s in services]
        starts = rng.sample(ids, min(50, len(ids)))
        for start in starts:
            for direction in ("out", "in", "both"):
                views = [
                    (await s.neighbors(start, depth=3, direction=direction, include_deleted=True))
                    for s in services
                ]
                assert views[0] == views[1], (start, direction)
            lineages = [await s.lineage(start, direction="both") for s in services]
            assert lineages[0] == lineages[1], start
        for _ in range(50):
            a, b = rng.sample(ids, 2)
            paths = []
            for s in services:
                try:
                    paths.append((await s.path(a, b, direction="both")).model_dump())
                except AiosError as error:
                    paths.append({"error": error.code})
            assert paths[0] == paths[1], (a, b)
        conflicts = [await s.conflicts(limit=500) for s in services]
        queries = [" ".join(rng.sample(WORDS, 2)) for _ in range(20)]
        for query in queries:
            # Scores differ between bm25 and Lucene, so compare what matches: every hit, with
            # fewer hits than the limit (asserted) so no ranking decides what is cut.
            found = [
                {hit.id for hit in (await s.search(query, limit=100, match="all")).hits}
                for s in services
            ]
            assert len(found[0]) < 100, query
            assert found[0] == found[1], query
    assert digests[0] == digests[1]
    assert conflicts[0] == conflicts[1]
