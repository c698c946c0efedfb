"""Scheduler benchmarks (spec/scheduler.md section 7): each row prints the figure, the baseline
measured in the same run on the same database settings, and the ratio against its target.

    uv run python bench/scheduler.py            # reduced sizes (about a minute on 2 cores)
    uv run python bench/scheduler.py --full     # the spec's sizes (100k jobs)

Rows: enqueue throughput, dispatch throughput, dispatch scaling, tool round trip over stdio,
transition latency (NORMAL and FULL), durable step miss and replay, replay benefit, recovery
time, evaluate, pipeline publish and read, streaming vs batch, memory. The reduced run scales
the spec's sizes down (stated in each row); ``--full`` uses them.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp import Client, StdioServerParameters

from aios_scheduler.config import SchedulerLimits, SchedulerSettings
from aios_scheduler.evaluation import DIMENSIONS
from aios_scheduler.models import AgentProfile
from aios_scheduler.pipelines import PipelineService
from aios_scheduler.service import SchedulerService

REPO = Path(__file__).resolve().parent.parent
Sync = Literal["NORMAL", "FULL"]


@dataclass
class Row:
    metric: str
    figure: float
    unit: str
    baseline: float
    ratio_target: str
    absolute_target: str

    def print(self) -> None:
        ratio = self.figure / self.baseline if self.baseline else float("nan")
        print(
            f"{self.metric:<34} {self.figure:>12,.1f} {self.unit:<10} "
            f"baseline {self.baseline:>12,.1f}  ratio {ratio:6.2f}  "
            f"(target {self.ratio_target}; absolute {self.absolute_target})"
        )


def raw_rate(path: Path, sync: Sync, count: int, statement: str, payload: Any) -> float:
    """Baseline: one-row statements, each committed on its own, plain sqlite3."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={sync}")
    connection.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB)")
    connection.execute("INSERT OR IGNORE INTO t(id, body) VALUES (1, x'00')")
    started = time.perf_counter()
    for index in range(count):
        connection.execute("BEGIN IMMEDIATE")
        if statement == "insert":
            connection.execute("INSERT INTO t(body) VALUES (?)", (payload,))
        else:
            connection.execute("UPDATE t SET body = ? WHERE id = 1", (str(index),))
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def raw_latencies(path: Path, sync: Sync, count: int) -> list[float]:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={sync}")
    connection.execute("CREATE TABLE IF NOT EXISTS u (id INTEGER PRIMARY KEY, v TEXT)")
    connection.execute("INSERT OR IGNORE INTO u VALUES (1, '')")
    samples = []
    for index in range(count):
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE u SET v = ? WHERE id = 1", (str(index),))
        connection.execute("COMMIT")
        samples.append(time.perf_counter() - started)
    connection.close()
    return samples


def settings_for(home: Path, sync: Sync) -> SchedulerSettings:
    return SchedulerSettings(
        home=home, synchronous=sync, limits=SchedulerLimits(queue_depth_max=1_000_000)
    )


async def timed(count: int, action: Callable[[int], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    for index in range(count):
        await action(index)
    return count / (time.perf_counter() - started)


async def enqueue_row(home: Path, jobs: int) -> Row:
    async with SchedulerService.open(settings_for(home / "enqueue", "NORMAL")) as service:
        for client in range(100):
            await service.register_client(f"c{client}", "marketplace", 1e9)

        async def submit(index: int) -> None:
            await service.submit_job({"client_id": f"c{index % 100}", "task": "t", "input": {}})

        rate = await timed(jobs, submit)
    baseline = raw_rate(home / "raw-enqueue.db", "NORMAL", jobs, "insert", b"x" * 600)
    return Row("enqueue throughput", rate, "jobs/s", baseline, ">= 0.25x", ">= 3,000 jobs/s")


async def dispatch_rate(home: Path, queued: int, pairs: int, clients: int) -> float:
    async with SchedulerService.open(settings_for(home, "NORMAL")) as service:
        for client in range(clients):
            await service.register_client(f"c{client}", "marketplace", 1e9)
        await service.register_agent(
            "a", AgentProfile(name="w"), 1.0, "supervised", "pool", "transient", 0.0
        )
        for index in range(queued):
            await service.submit_job({"client_id": f"c{index % clients}", "task": "t"})

        async def pair(_: int) -> None:
            leased = await service.dispatch_next("a")
            assert leased.job is not None and leased.lease_id is not None
            await service.complete_job(leased.job.job_id, leased.lease_id, None, None)

        return await timed(pairs, pair)


async def dispatch_rows(home: Path, queued: int, pairs: int) -> list[Row]:
    large = await dispatch_rate(home / "dispatch-large", queued, pairs, 1000)
    small = await dispatch_rate(home / "dispatch-small", 1000, min(pairs, 1000), 1000)
    baseline = raw_rate(home / "raw-dispatch.db", "NORMAL", pairs, "update", None)
    return [
        Row(
            f"dispatch+complete ({queued:,} queued)",
            large,
            "pairs/s",
            baseline,
            ">= 0.20x",
            ">= 1,500 pairs/s",
        ),
        Row("dispatch scaling (large vs 1k)", large, "pairs/s", small, "at 100k >= 0.7x", "-"),
    ]


async def transition_rows(home: Path, count: int) -> list[Row]:
    rows = []
    for sync in ("NORMAL", "FULL"):
        async with SchedulerService.open(settings_for(home / f"transition-{sync}", sync)) as svc:
            await svc.register_client("c", "marketplace", 10.0)
            await svc.register_agent(
                "a", AgentProfile(name="w"), 1.0, "supervised", "pool", "transient", 0.0
            )
            job = await svc.submit_job({"client_id": "c", "task": "t"})
            leased = await svc.dispatch_next("a")
            assert leased.lease_id is not None
            samples = []
            for _ in range(count):
                started = time.perf_counter()
                await svc.checkpoint_job(job.job_id, leased.lease_id, None)
                await svc.resume_job(job.job_id, leased.lease_id)
                samples.append((time.perf_counter() - started) / 2)
        baseline = raw_latencies(home / f"raw-transition-{sync}.db", sync, count)
        p50, raw_p50 = statistics.median(samples) * 1e3, statistics.median(baseline) * 1e3
        p99 = statistics.quantiles(samples, n=100)[98] * 1e3
        row = Row(
            f"transition p50 ms ({sync}; p99 {p99:.2f})",
            p50,
            "ms",
            raw_p50,
            "p50 <= 3x baseline",
            "p50 <= 0.5 ms, p99 <= 3 ms (NORMAL)",
        )
        rows.append(row)
    return rows


async def step_rows(home: Path, count: int) -> list[Row]:
    blob = {"data": "x" * 1000}
    async with SchedulerService.open(settings_for(home / "steps", "NORMAL")) as service:
        await service.register_client("c", "marketplace", 10.0)
        await service.register_agent(
            "a", AgentProfile(name="w"), 1.0, "supervised", "pool", "transient", 0.0
        )
        job = await service.submit_job({"client_id": "c", "task": "t"})
        leased = await service.dispatch_next("a")
        lease = leased.lease_id
        assert lease is not None

        async def miss(index: int) -> None:
            await service.step_begin(job.job_id, lease, f"s{index}")
            await service.step_complete(job.job_id, lease, f"s{index}", blob, 1)

        async def hit(index: int) -> None:
            await service.step_begin(job.job_id, lease, f"s{index}")

        miss_rate = await timed(count, miss)
        hit_rate = await timed(count, hit)
    baseline = raw_rate(home / "raw-steps.db", "NORMAL", count, "insert", b"x" * 1024)
    return [
        Row(
            "durable step miss (1 KiB)",
            miss_rate,
            "steps/s",
            baseline,
            ">= 0.3x",
            ">= 2,000 steps/s",
        ),
        Row("durable step replay", hit_rate, "steps/s", miss_rate, ">= 2x", ">= 5,000/s"),
    ]


async def evaluate_row(home: Path, count: int) -> Row:
    async with SchedulerService.open(settings_for(home / "evaluate", "NORMAL")) as service:
        await service.register_agent(
            "a", AgentProfile(name="w"), 1.0, "supervised", "pool", "transient", 0.0
        )
        scores = dict.fromkeys(DIMENSIONS, 0.5)

        async def evaluate(_: int) -> None:
            await service.evaluate("a", scores, None, None, None, None, None)

        rate = await timed(count, evaluate)
    baseline = raw_rate(home / "raw-evaluate.db", "NORMAL", count, "insert", b"x" * 200)
    return Row("evaluate", rate, "calls/s", baseline, "- (raw insert shown)", ">= 5,000/s")


async def pipeline_rows(home: Path, count: int) -> list[Row]:
    stages = [
        {"name": "source", "publishes": ["tick"]},
        *({"name": f"sink{n}", "subscribes": ["tick"], "publishes": []} for n in range(3)),
    ]
    async with SchedulerService.open(settings_for(home / "pipeline", "NORMAL")) as service:
        pipelines = PipelineService(service)
        pipeline_id = await pipelines.create("bench", stages, False)
        data = {"payload": "x" * 240}

        async def publish(_: int) -> None:
            await pipelines.publish(pipeline_id, "source", "tick", data)

        rate = await timed(count, publish)
        started = time.perf_counter()
        read = 0
        after = -1
        while True:
            events = await pipelines.read(pipeline_id, "sink0", after, 1000)
            if not events:
                break
            read += len(events)
            after = events[-1]["sequence"]
        read_ms = (time.perf_counter() - started) * 1e3
    baseline = raw_rate(home / "raw-events.db", "NORMAL", count, "insert", b"x" * 256)
    return [
        Row("pipeline publish (256 B)", rate, "events/s", baseline, ">= 0.3x", ">= 5,000 events/s"),
        Row(f"read_events of {read:,} (ms)", read_ms, "ms", 150.0, "<= 1x of 150 ms", "-"),
    ]


async def round_trip_row(home: Path, calls: int) -> Row:
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aios_scheduler", "--home", str(home / "stdio"), "--log-level", "warning"],
        env={"AIOS_SYNCHRONOUS": "NORMAL", "PATH": "/usr/bin:/bin"},
        cwd=str(REPO),
    )
    async with Client(parameters, mode="legacy") as client:
        await client.call_tool(
            "register_client", {"client_id": "c", "tier": "marketplace", "credits": 1e9}
        )
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("submit_job", {"client_id": "c", "task": "t"})
            samples.append(time.perf_counter() - started)
            assert not result.is_error, result
        pings = []
        for _ in range(calls):
            started = time.perf_counter()
            await client.send_ping()
            pings.append(time.perf_counter() - started)
    rate = calls / sum(samples)
    p99 = statistics.quantiles(samples, n=100)[98] * 1e3
    return Row(
        f"submit_job over stdio (p99 {p99:.1f} ms)",
        rate,
        "calls/s",
        calls / sum(pings),
        ">= 0.5x ping rate",
        ">= 400 calls/s; p99 <= 10 ms",
    )


async def replay_row(home: Path, steps: int, step_s: float) -> Row:
    """A job of ``steps`` steps of ``step_s`` each, uncrashed versus killed at 90 % (the
    service is closed without finishing) and resumed by a fresh service on the same file."""

    async def run(path: Path, crash_at: int | None) -> float:
        started = time.perf_counter()
        async with SchedulerService.open(settings_for(path, "NORMAL")) as service:
            await service.register_client("c", "marketplace", 10.0)
            await service.register_agent(
                "a", AgentProfile(name="w"), 1.0, "supervised", "pool", "transient", 0.0
            )
            job = await service.submit_job({"client_id": "c", "task": "t"})
            leased = await service.dispatch_next("a")
            assert leased.lease_id is not None
            for index in range(crash_at if crash_at is not None else steps):
                await service.step_begin(job.job_id, leased.lease_id, f"s{index}")
                await anyio.sleep(step_s)
                await service.step_complete(job.job_id, leased.lease_id, f"s{index}", index, 1)
        if crash_at is not None:
            async with SchedulerService.open(settings_for(path, "NORMAL")) as service:
                for index in range(steps):
                    begun = await service.step_begin(job.job_id, leased.lease_id, f"s{index}")
                    if not begun["cached"]:
                        await anyio.sleep(step_s)
                        await service.step_complete(
                            job.job_id, leased.lease_id, f"s{index}", index, 1
                        )
        return time.perf_counter() - started

    clean = await run(home / "replay-clean", None)
    crashed = await run(home / "replay-crashed", steps * 9 // 10)
    return Row(
        f"replay benefit ({steps} x {step_s * 1e3:g} ms), s",
        crashed,
        "s",
        clean,
        "total <= 1.15x uncrashed",
        "-",
    )


async def recovery_row(home: Path, jobs: int) -> Row:
    """Time from process start to the first successful call: a populated DB versus empty."""
    populated = home / "recovery"
    async with SchedulerService.open(settings_for(populated, "NORMAL")) as service:
        for client in range(100):
            await service.register_client(f"c{client}", "marketplace", 1e9)
        await service.register_agent(
            "a", AgentProfile(name="w"), 1.0, "supervised", "pool", "transient", 0.0
        )
        for index in range(jobs):
            await service.submit_job({"client_id": f"c{index % 100}", "task": "t"})
        for _ in range(jobs // 10):
            leased = await service.dispatch_next("a")
            assert leased.job is not None and leased.lease_id is not None
            await service.complete_job(leased.job.job_id, leased.lease_id, None, None)

    async def first_call(path: Path) -> float:
        parameters = StdioServerParameters(
            command=sys.executable,
            args=["-m", "aios_scheduler", "--home", str(path), "--log-level", "warning"],
            cwd=str(REPO),
        )
        started = time.perf_counter()
        async with Client(parameters) as client:
            result = await client.call_tool("get_stats", {})
            assert not result.is_error, result
            return time.perf_counter() - started

    return Row(
        f"recovery, first call ({jobs:,} jobs), s",
        await first_call(populated),
        "s",
        await first_call(home / "recovery-empty"),
        "<= empty + 1.0 s",
        "<= 2.0 s",
    )


async def streaming_row(home: Path, events: int, event_s: float) -> Row:
    """Five stages, each handling every event of the previous one for ``event_s``: streamed
    (stages run concurrently off the durable log) versus batch (stage after stage)."""
    names = [f"st{n}" for n in range(5)]
    stages = [
        {"name": name, "publishes": [f"e{n}"], "subscribes": [f"e{n - 1}"] if n else []}
        for n, name in enumerate(names)
    ]

    async def run(streaming: bool) -> float:
        path = home / f"stream-{streaming}"
        async with SchedulerService.open(settings_for(path, "NORMAL")) as service:
            pipelines = PipelineService(service)
            pipeline_id = await pipelines.create("flow", stages, False)

            async def stage(n: int) -> None:
                handled = 0
                while handled < events:
                    if n == 0:
                        await anyio.sleep(event_s)
                        await pipelines.publish(pipeline_id, names[0], "e0", handled)
                        handled += 1
                        continue
                    batch = await pipelines.read(pipeline_id, names[n], None, 100)
                    if not batch:
                        await anyio.sleep(event_s / 4)
                        continue
                    for event in batch:
                        await anyio.sleep(event_s)
                        await pipelines.publish(pipeline_id, names[n], f"e{n}", event["data"])
                        await pipelines.ack(pipeline_id, names[n], event["sequence"])
                        handled += 1

            started = time.perf_counter()
            if streaming:
                async with anyio.create_task_group() as group:
                    for n in range(5):
                        group.start_soon(stage, n)
            else:
                for n in range(5):
                    await stage(n)
            return time.perf_counter() - started

    return Row(
        f"streaming vs batch (5 x {events} x {event_s * 1e3:g} ms), s",
        await run(True),
        "s",
        await run(False),
        "<= 0.6x",
        "-",
    )


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def memory_row(home: Path, jobs: int) -> Row:
    async with SchedulerService.open(settings_for(home / "memory", "NORMAL")) as service:
        await service.register_client("c", "marketplace", 1e9)
        idle = rss_kib()
        for _ in range(jobs):
            await service.submit_job({"client_id": "c", "task": "t", "input": {}})
        loaded = rss_kib()
    return Row(
        f"memory, {jobs:,} queued (MiB RSS)",
        loaded / 1024,
        "MiB",
        idle / 1024,
        "<= idle + 150 MB at 100k",
        "<= 250 MB RSS",
    )


async def main(full: bool) -> None:
    jobs = 100_000 if full else 10_000
    print(f"sizes: {jobs:,} jobs ({'spec' if full else 'reduced; --full for the spec sizes'})")
    pairs = 20_000 if full else 3_000
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory)
        rows = [await enqueue_row(home, jobs)]
        rows += await dispatch_rows(home, jobs, pairs)
        rows.append(await round_trip_row(home, 500))
        rows += await transition_rows(home, 1000)
        rows += await step_rows(home, 3000)
        rows.append(await evaluate_row(home, 3000))
        rows += await pipeline_rows(home, 10_000 if full else 5_000)
        rows.append(await replay_row(home, 1000, 0.010 if full else 0.002))
        rows.append(await recovery_row(home, jobs))
        rows.append(await streaming_row(home, 100, 0.010 if full else 0.004))
        rows.append(await memory_row(home, jobs))
    print(json.dumps({"full": full}))
    for row in rows:
        row.print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the spec's sizes (100k jobs)")
    anyio.run(main, parser.parse_args().full)
