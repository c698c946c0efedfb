"""Tools-server benchmarks (spec tools.md section 6), each case next to its baseline in the same
run. Implemented so far: B1 (token verify, root + 1 caveat, vs bare HMAC over the same bytes), B2
(verify with 8 caveats vs B1), B5 (charge + audit decision row vs a plain insert, WAL NORMAL).
B3, B4, B6-B12 need the registry, sandbox and MCP tier, which are not built yet.

    uv run python bench/tools.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import hmac
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from aios_shared import capabilities as cap
from aios_shared.db import Database, Migration
from aios_tools.store import TokenStore

AUD = "bench"


def timed(fn: Callable[[], object], iterations: int) -> list[float]:
    for _ in range(min(200, iterations)):
        fn()
    out: list[float] = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


async def timed_async(fn: Callable[[], Awaitable[object]], iterations: int) -> list[float]:
    for _ in range(min(50, iterations)):
        await fn()
    out: list[float] = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        await fn()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if q < 100 else max(values)


def row(name: str, case: list[float], base: list[float], limit: float, absolute: str) -> bool:
    ratio = statistics.median(case) / statistics.median(base)
    ok = ratio <= limit
    sys.stdout.write(
        f"{name:4} p50 {statistics.median(case):9.1f} us  p99 {pct(case, 99):9.1f} us  "
        f"baseline p50 {statistics.median(base):9.1f} us  ratio {ratio:6.2f} (<= {limit})  "
        f"{'PASS' if ok else 'FAIL'}  [{absolute}]\n"
    )
    return ok


async def bench_audit(iterations: int, directory: Path) -> tuple[list[float], list[float]]:
    ring = cap.new_keyring("k1")
    token, _ = cap.issue(ring, audience=AUD, sub="a", tool="t", rate_limit=(10000, 1), now=0)
    plain = [Migration(1, "plain", "CREATE TABLE plain (ts INTEGER, actor TEXT, details TEXT);")]
    async with (
        TokenStore.open(directory / "tools.db") as store,
        Database.open(directory / "plain.db", migrations=plain) as db,
    ):
        verified = cap.verify(token, ring, audience=AUD, now=0, leeway_s=0)
        clock = iter(range(10**12))

        async def charged() -> None:
            await store.charge(
                verified, now_ms=next(clock) * 1000, actor="a", action="invoke_tool", details={}
            )

        async def bare() -> None:
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO plain VALUES (?, ?, ?)", (next(clock), "a", '{"x":1}')
                )

        return await timed_async(charged, iterations), await timed_async(bare, iterations)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    ring = cap.new_keyring("k1")
    root, _ = cap.issue(ring, audience=AUD, sub="agent-7", tool="text_transform", now=1000)
    one = cap.append_caveat(root, {"id": cap.new_id(), "perms": ["invoke"]})
    eight = root
    for _ in range(8):
        eight = cap.append_caveat(eight, {"id": cap.new_id(), "perms": ["invoke"]})
    key = ring.keys["k1"].secret
    data = one.rpartition(".")[0].encode()
    revoked: set[str] = set()

    def is_revoked(ids: object) -> bool:
        return any(i in revoked for i in ids)  # type: ignore[attr-defined]

    def verify(token: str) -> Callable[[], object]:
        return lambda: cap.verify(
            token, ring, audience=AUD, now=1001, leeway_s=5, is_revoked=is_revoked
        )

    b1 = timed(verify(one), args.iterations)
    bare = timed(lambda: hmac.digest(key, data, "sha256"), args.iterations)
    b2 = timed(verify(eight), args.iterations)
    ok = row("B1", b1, bare, 8.0, "p50 <= 20 us, p99 <= 60 us")
    ok &= row("B2", b2, b1, 2.5, "p50 <= 40 us")
    with tempfile.TemporaryDirectory() as tmp:
        audit, plain = anyio.run(bench_audit, max(args.iterations // 4, 200), Path(tmp))
    ok &= row("B5", audit, plain, 1.3, "p50 <= 300 us per invocation (decision row only here)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
