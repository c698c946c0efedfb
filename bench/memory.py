"""Memory server benchmarks (spec/memory.md section 7), each row against a baseline measured in
the same run: raw SQLite writes, a LIKE scan, node-at-a-time BFS, and the reference MCP memory
server (npm @modelcontextprotocol/server-memory) over stdio with the same client.

Prints a table and writes JSON rows (figure, target, ratio, met/missed, machine). A missed
target is reported, never an error.

    uv run python bench/memory.py [--nodes 100000] [--json bench-memory.json]

Data (seed 42): memories over the 24 types with 20-60 words drawn Zipf-wise from a 5,000-word
vocabulary and tags from 200; each node gets 3 out-edges to random nodes over 5 relations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import httpx2
from mcp import Client, StdioServerParameters

from aios_memory.config import MemorySettings
from aios_memory.models import SaveItem
from aios_memory.schemas import TYPES
from aios_memory.service import MemoryService
from aios_memory.store import RELATIONS
from aios_memory.store_sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent
REFERENCE_SERVER = REPO / ".tools" / "node" / "node_modules" / ".bin" / "mcp-server-memory"
NODE_BIN = REFERENCE_SERVER.parent
SEED = 42
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


@dataclass
class Row:
    id: str
    measure: str
    figure: float | None
    unit: str
    target: str
    met: bool | None
    ratio: float | None = None
    ratio_target: str = "report only"
    ratio_met: bool | None = None
    note: str = ""


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed(call: Callable[[], Awaitable[Any]], repeats: int) -> list[float]:
    """Seconds per call."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


class Corpus:
    """The seeded data set."""

    def __init__(self, nodes: int) -> None:
        rng = random.Random(SEED)
        self.rng = rng
        self.vocabulary = [f"w{index}" for index in range(5_000)]
        self.weights = [1.0 / (rank + 1) for rank in range(5_000)]
        self.tags = [f"tag{index}" for index in range(200)]
        self.nodes = nodes

    def text(self) -> str:
        count = self.rng.randint(20, 60)
        return " ".join(self.rng.choices(self.vocabulary, self.weights, k=count))

    def item(self, index: int) -> SaveItem:
        name = list(TYPES)[index % 24]
        example = dict(TYPES[name].example)
        example.setdefault("attributes", {})
        example["attributes"] = {"n": index}
        return SaveItem(
            type=name,
            data=example,
            text=self.text(),
            tags=self.rng.sample(self.tags, 2),
        )


def settings_for(home: Path, **limits: int) -> MemorySettings:
    return MemorySettings.model_validate(
        {"home": home, "node_id": "bench", "limits": limits} if limits else {"home": home}
    )


async def raw_single_inserts(path: Path, count: int) -> float:
    """Baseline of B1: aiosqlite INSERT + commit of (id, body), same PRAGMAs."""
    async with aiosqlite.connect(path, isolation_level=None) as db:
        for pragma in PRAGMAS:
            await db.execute(pragma)
        await db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        started = time.perf_counter()
        for index in range(count):
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO t VALUES (?, ?)", (f"id-{index}", "x" * 300))
            await db.execute("COMMIT")
        return count / (time.perf_counter() - started)


def raw_batch_inserts(path: Path, count: int) -> float:
    """Baseline of B2: executemany in one transaction."""
    with sqlite3.connect(path, isolation_level=None) as db:
        for pragma in PRAGMAS:
            db.execute(pragma)
        db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        rows = [(f"id-{index}", "x" * 300) for index in range(count)]
        started = time.perf_counter()
        for start in range(0, count, 500):
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO t VALUES (?, ?)", rows[start : start + 500])
            db.execute("COMMIT")
        return count / (time.perf_counter() - started)


async def load(service: MemoryService, corpus: Corpus, count: int) -> tuple[list[str], float]:
    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, count, 500):
        batch = [corpus.item(i) for i in range(start, min(count, start + 500))]
        ids.extend((await service.save_many(batch)).ids)
    return ids, len(ids) / (time.perf_counter() - started)


def add_edges(path: Path, ids: list[str], rng: random.Random) -> None:
    """Set-up only (not measured): 3 out-edges per node over 5 relations, bulk-inserted."""
    relations = [r for r in RELATIONS if r not in ("contradicts", "related_to")][:5]
    now = "2026-01-01T00:00:00.000000Z"
    rows = set()
    for source in ids:
        for _ in range(3):
            target = rng.choice(ids)
            if target != source:
                rows.add((source, target, rng.choice(relations)))
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT OR IGNORE INTO edges (from_id, to_id, relation, weight, metadata, created_at, "
            "created_by) VALUES (?, ?, ?, 1.0, '{}', ?, 'bench')",
            [(*row, now) for row in rows],
        )
        db.execute("COMMIT")


async def node_at_a_time_bfs(store: SqliteStore, start: str, depth: int, now: str) -> int:
    """Baseline of B6: one edge query per expanded node."""
    seen = {start}
    frontier = [start]
    for _ in range(depth):
        fresh: list[str] = []
        for node in frontier:
            for _, _, neighbour in await store.expand([node], list(RELATIONS), "both", False, now):
                if neighbour not in seen:
                    seen.add(neighbour)
                    fresh.append(neighbour)
        frontier = fresh
    return len(seen)


async def like_scan(path: Path, terms: list[str]) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "SELECT id FROM memories WHERE text LIKE ? AND text LIKE ? LIMIT 10",
            tuple(f"%{term}%" for term in terms),
        ).fetchall()


async def mcp_calls(
    parameters: StdioServerParameters,
    make_call: Callable[[int], tuple[str, dict[str, Any]]],
    count: int,
    preload: int = 0,
    preload_call: Callable[[int], tuple[str, dict[str, Any]]] | None = None,
) -> float:
    """Calls/s of one call at a time over stdio, after ``preload`` calls (not measured)."""
    async with Client(parameters, mode="legacy") as client:
        for index in range(preload):
            name, arguments = (preload_call or make_call)(index)
            await client.call_tool(name, arguments)
        started = time.perf_counter()
        for index in range(count):
            name, arguments = make_call(preload + index)
            result = await client.call_tool(name, arguments)
            assert not result.is_error, result
        return count / (time.perf_counter() - started)


def ours(home: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "aios_memory", "--transport", "stdio", "--log-level", "warning"],
        env={**os.environ, "AIOS_HOME": str(home)},
    )


def reference(home: Path) -> StdioServerParameters | None:
    if not REFERENCE_SERVER.exists():
        return None
    return StdioServerParameters(
        command=str(REFERENCE_SERVER),
        args=[],
        env={
            **os.environ,
            "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MEMORY_FILE_PATH": str(home / "reference-memory.jsonl"),
        },
    )


async def bench_mcp(scratch: Path, corpus: Corpus, rows: list[Row], stored_max: int) -> None:
    """B3 and the MCP half of B4: ours vs the reference server, same client and workload."""

    def our_save(index: int) -> tuple[str, dict[str, Any]]:
        return "save", {"type": "fact", "data": {"assertion": f"{corpus.text()} n{index}"}}

    def their_save(index: int) -> tuple[str, dict[str, Any]]:
        entity = {"name": f"e{index}", "entityType": "fact", "observations": [corpus.text()]}
        return "create_entities", {"entities": [entity]}

    calls = 300
    results: dict[tuple[str, int], float] = {}
    for stored in sorted({min(1_000, stored_max), min(10_000, stored_max)}):
        home = scratch / f"mcp-ours-{stored}"
        results[("ours", stored)] = await mcp_calls(ours(home), our_save, calls, stored)
        parameters = reference(scratch / f"mcp-ref-{stored}")
        if parameters is not None:
            (scratch / f"mcp-ref-{stored}").mkdir(exist_ok=True)
            results[("ref", stored)] = await mcp_calls(parameters, their_save, calls, stored)
    for stored, ratio_target in ((1_000, 0.8), (10_000, 4.0)):
        mine = results.get(("ours", min(stored, stored_max)))
        theirs = results.get(("ref", min(stored, stored_max)))
        ratio = None if mine is None or theirs is None else mine / theirs
        rows.append(
            Row(
                "B3",
                f"save over MCP stdio at {min(stored, stored_max):,} stored",
                mine,
                "calls/s",
                ">= 300/s",
                None if mine is None else mine >= 300,
                ratio,
                f">= {ratio_target}x reference create_entities",
                None if ratio is None else ratio >= ratio_target,
                "" if theirs is not None else "reference server not installed (.tools/node)",
            )
        )
    await bench_mcp_search(scratch, corpus, rows, min(10_000, stored_max))


async def bench_mcp_search(scratch: Path, corpus: Corpus, rows: list[Row], stored: int) -> None:
    terms = corpus.vocabulary[40:42]

    def our_search(_: int) -> tuple[str, dict[str, Any]]:
        return "search", {"query": " ".join(terms), "limit": 10}

    def their_search(_: int) -> tuple[str, dict[str, Any]]:
        return "search_nodes", {"query": terms[0]}

    home = scratch / f"mcp-ours-{stored}"
    mine = await mcp_calls(ours(home), our_search, 100)
    parameters = reference(scratch / f"mcp-ref-{stored}")
    theirs = None if parameters is None else await mcp_calls(parameters, their_search, 100)
    ratio = None if theirs is None else mine / theirs
    rows.append(
        Row(
            "B4",
            f"search over MCP stdio at {stored:,} stored",
            mine,
            "calls/s",
            "report only",
            None,
            ratio,
            ">= 4x reference search_nodes",
            None if ratio is None else ratio >= 4,
            "" if theirs is not None else "reference server not installed (.tools/node)",
        )
    )


async def bench_service(scratch: Path, corpus: Corpus, nodes: int, rows: list[Row]) -> Path:
    # B1: single saves vs raw aiosqlite insert + commit.
    home = scratch / "b1"
    single = 2_000
    async with MemoryService.open(settings_for(home), SqliteStore(home / "m.db")) as service:
        items = [corpus.item(i) for i in range(single)]
        started = time.perf_counter()
        for item in items:
            await service.save(item)
        mine = single / (time.perf_counter() - started)
    raw = await raw_single_inserts(scratch / "raw1.db", single)
    rows.append(
        Row(
            "B1",
            "single save, service level",
            mine,
            "saves/s",
            ">= 1,500/s",
            mine >= 1_500,
            mine / raw,
            ">= 0.20x raw aiosqlite INSERT+commit",
            mine / raw >= 0.20,
        )
    )
    # B2 (and the big store for B4-B8): save_many in batches of 500.
    home = scratch / "big"
    settings = settings_for(home)
    async with MemoryService.open(settings, SqliteStore(home / "memory.db")) as service:
        ids, rate = await load(service, corpus, nodes)
    raw_rate = raw_batch_inserts(scratch / "raw2.db", nodes)
    rows.append(
        Row(
            "B2",
            "save_many, batches of 500",
            rate,
            "memories/s",
            ">= 5,000/s",
            rate >= 5_000,
            rate / raw_rate,
            "report only (vs raw executemany)",
            None,
        )
    )
    add_edges(home / "memory.db", ids, corpus.rng)
    await bench_reads(home, settings, corpus, ids, rows)
    return home


async def bench_reads(
    home: Path, settings: MemorySettings, corpus: Corpus, ids: list[str], rows: list[Row]
) -> None:
    rng = random.Random(SEED + 1)
    nodes = len(ids)
    async with MemoryService.open(settings, SqliteStore(home / "memory.db")) as service:
        # B4: two-term full-text queries, all terms, limit 10, vs a LIKE scan.
        queries = [rng.sample(corpus.vocabulary[10:400], 2) for _ in range(200)]
        samples = []
        for terms in queries:
            started = time.perf_counter()
            await service.search(" ".join(terms), limit=10)
            samples.append(time.perf_counter() - started)
        like = []
        for terms in queries[:20]:
            started = time.perf_counter()
            await like_scan(home / "memory.db", terms)
            like.append(time.perf_counter() - started)
        p50, p99 = percentile(samples, 0.5) * 1e3, percentile(samples, 0.99) * 1e3
        ratio = percentile(like, 0.5) * 1e3 / p50
        rows.append(
            Row(
                "B4",
                f"full-text search at {nodes:,}, p50 (p99 {p99:.1f} ms)",
                p50,
                "ms",
                "p50 <= 5 ms, p99 <= 30 ms",
                p50 <= 5 and p99 <= 30,
                ratio,
                ">= 20x faster than LIKE scan",
                ratio >= 20,
            )
        )
        # B5: get by id, cache miss vs cache hit.
        service.working.cache_enabled = False
        misses = await timed(lambda: service.get(rng.choice(ids)), 2_000)
        service.working.cache_enabled = True
        hot = ids[0]
        await service.get(hot)
        hits = await timed(lambda: service.get(hot), 2_000)
        miss_p50, hit_p50 = percentile(misses, 0.5) * 1e3, percentile(hits, 0.5) * 1e3
        rows.append(
            Row(
                "B5",
                f"get by id at {nodes:,}, miss p50",
                miss_p50,
                "ms",
                "<= 0.3 ms",
                miss_p50 <= 0.3,
            )
        )
        rows.append(
            Row("B5", "get by id, cache hit p50", hit_p50, "ms", "<= 0.05 ms", hit_p50 <= 0.05)
        )
        # B6: neighbors depth 3, both directions, vs node-at-a-time BFS on the same store.
        starts = rng.sample(ids, 100)
        bfs = []
        for start in starts:
            started = time.perf_counter()
            await service.neighbors(start, depth=3, direction="both", nodes_max=10_000)
            bfs.append(time.perf_counter() - started)
        naive = []
        for start in starts[:20]:
            started = time.perf_counter()
            await node_at_a_time_bfs(service.store, start, 3, service.now())  # type: ignore[arg-type]
            naive.append(time.perf_counter() - started)
        p50, p99 = percentile(bfs, 0.5) * 1e3, percentile(bfs, 0.99) * 1e3
        ratio = percentile(naive, 0.5) * 1e3 / p50
        rows.append(
            Row(
                "B6",
                f"neighbors d3 both at {nodes:,}, p50 (p99 {p99:.1f} ms)",
                p50,
                "ms",
                "p50 <= 15 ms, p99 <= 50 ms",
                p50 <= 15 and p99 <= 50,
                ratio,
                ">= 3x node-at-a-time BFS",
                ratio >= 3,
            )
        )
    await bench_working(home, corpus, rows)


async def bench_working(home: Path, corpus: Corpus, rows: list[Row]) -> None:
    """B7: working-tier get, and the sweep of 10,000 expired memories (fake clock)."""
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    settings = settings_for(home / "working", working_items_max=20_000)
    store = SqliteStore(home / "working" / "m.db")
    async with MemoryService.open(settings, store, clock=lambda: moment[0]) as service:
        batch = [
            corpus.item(i).model_copy(update={"tier": "working", "ttl_s": 60})
            for i in range(10_000)
        ]
        for start in range(0, 10_000, 500):
            await service.save_many(batch[start : start + 500])
        some = next(iter(service.working.entries))
        samples = await timed(lambda: service.get(some), 5_000)
        moment[0] += timedelta(seconds=61)
        started = time.perf_counter()
        swept = await service.sweep_working()
        sweep_ms = (time.perf_counter() - started) * 1e3
    p50_us = percentile(samples, 0.5) * 1e6
    rows.append(Row("B7", "working get p50", p50_us, "us", "<= 20 us", p50_us <= 20))
    rows.append(
        Row("B7", f"sweep of {swept:,} expired", sweep_ms, "ms", "<= 50 ms", sweep_ms <= 50)
    )


def bench_cold_start(home: Path, nodes: int, rows: list[Row]) -> None:
    """B8: time from spawn to /healthz answering, with the big store in place."""
    ready = home / "ready.json"
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aios_memory",
            "--transport",
            "http",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--home",
            str(home),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not ready.exists():
            if process.poll() is not None:
                raise SystemExit("memory server did not start")
            time.sleep(0.01)
        base = json.loads(ready.read_text())["url"].removesuffix("/mcp")
        while httpx2.get(f"{base}/healthz").status_code != 200:
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(20)
    rows.append(
        Row("B8", f"cold start with {nodes:,} stored", seconds, "s", "<= 3 s", seconds <= 3)
    )


def print_table(rows: list[Row]) -> None:
    print(f"{'#':<3} {'measure':<52} {'figure':>12} {'target':<28} {'ratio':>8}  ratio target")
    for row in rows:
        figure = "n/a" if row.figure is None else f"{row.figure:,.2f} {row.unit}"
        met = {True: "met", False: "MISSED", None: "-"}[row.met]
        ratio = "n/a" if row.ratio is None else f"{row.ratio:.2f}x"
        ratio_met = {True: "met", False: "MISSED", None: ""}[row.ratio_met]
        print(
            f"{row.id:<3} {row.measure:<52} {figure:>12} {row.target + ' ' + met:<28} "
            f"{ratio:>8}  {row.ratio_target} {ratio_met} {row.note}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument(
        "--json", type=Path, default=Path(tempfile.gettempdir()) / "aios-bench-memory.json"
    )
    parser.add_argument("--skip-mcp", action="store_true", help="skip B3 and the MCP B4 row")
    arguments = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="aios-bench-memory-"))
    rows: list[Row] = []
    corpus = Corpus(arguments.nodes)
    try:
        home = await bench_service(scratch, corpus, arguments.nodes, rows)
        await anyio.to_thread.run_sync(bench_cold_start, home, arguments.nodes, rows)
        if not arguments.skip_mcp:
            await bench_mcp(scratch, corpus, rows, arguments.nodes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(rows)
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print("Neo4j rows: not measured by this version of the benchmark (SQLite only).")
    arguments.json.write_text(
        json.dumps(
            {"bench": "memory", "machine": machine, "rows": [asdict(r) for r in rows]}, indent=2
        )
    )
    print(f"wrote {arguments.json}")


if __name__ == "__main__":
    anyio.run(main)
