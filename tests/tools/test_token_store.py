"""Persisted token state in a real tools.db: exact sliding-window counts, shared parent/child
buckets, one-shot tokens, durable revocation, and a charge that commits with its audit row."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from aios_shared import capabilities as cap
from aios_shared.errors import RateLimited, Unauthenticated
from aios_tools.store import TokenStore

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000
AUD = "deploy-a"


@pytest.fixture
def keyring() -> cap.Keyring:
    return cap.new_keyring("k1")


def verified_of(token: str, keyring: cap.Keyring, store: TokenStore) -> cap.VerifiedToken:
    return cap.verify(
        token, keyring, audience=AUD, now=NOW, leeway_s=0, is_revoked=store.is_revoked
    )


async def charge(store: TokenStore, verified: cap.VerifiedToken, now_ms: int) -> Any:
    return await store.charge(
        verified, now_ms=now_ms, actor=verified.sub, action="invoke_tool", details={}
    )


def audit_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])


async def test_a_five_per_minute_token_admits_exactly_five_then_one_per_freed_slot(
    tmp_path: Path, keyring: cap.Keyring
) -> None:
    """Acceptance 10: calls 1-5 pass, call 6 is rate_limited with 0 < retry_after_ms <= 60000,
    at t_first + 60 s exactly one more passes, and a refused call writes no audit row."""
    token, _ = cap.issue(
        keyring, audience=AUD, sub="agent-7", tool="text_transform", rate_limit=(5, 60), now=NOW
    )
    db = tmp_path / "tools.db"
    async with TokenStore.open(db) as store:
        verified = verified_of(token, keyring, store)
        t0 = NOW * 1000
        for i in range(5):
            await charge(store, verified, t0 + i * 1000)
        with pytest.raises(RateLimited) as limited:
            await charge(store, verified, t0 + 5000)
        assert limited.value.details["reason"] == "rate_limited"
        assert 0 < limited.value.details["retry_after_ms"] <= 60000
        assert audit_rows(db) == 5
        await charge(store, verified, t0 + 60_000)
        with pytest.raises(RateLimited):
            await charge(store, verified, t0 + 60_000)
        assert audit_rows(db) == 6


async def test_twenty_concurrent_calls_on_a_fresh_five_per_minute_token_admit_exactly_five(
    tmp_path: Path, keyring: cap.Keyring
) -> None:
    """Acceptance 10: the count is exact under concurrency (one writer, BEGIN IMMEDIATE)."""
    token, _ = cap.issue(
        keyring, audience=AUD, sub="agent-7", tool="text_transform", rate_limit=(5, 60), now=NOW
    )
    outcomes: list[str] = []
    async with TokenStore.open(tmp_path / "tools.db") as store:
        verified = verified_of(token, keyring, store)

        async def one() -> None:
            try:
                await charge(store, verified, NOW * 1000)
                outcomes.append("ok")
            except RateLimited:
                outcomes.append("limited")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
    assert outcomes.count("ok") == 5
    assert outcomes.count("limited") == 15


async def test_a_child_draws_on_its_parents_bucket(tmp_path: Path, keyring: cap.Keyring) -> None:
    """Acceptance 11: parent 5/60, child 3/60: the child passes 3 times, then is limited, and
    the parent has exactly 2 calls left."""
    parent, _ = cap.issue(
        keyring, audience=AUD, sub="agent-7", tool="text_transform", rate_limit=(5, 60), now=NOW
    )
    async with TokenStore.open(tmp_path / "tools.db") as store:
        pv = verified_of(parent, keyring, store)
        child, _ = cap.attenuate(pv, parent, caller="agent-7", now=NOW, rate_limit=(3, 60))
        cv = verified_of(child, keyring, store)
        for i in range(3):
            await charge(store, cv, NOW * 1000 + i)
        with pytest.raises(RateLimited) as limited:
            await charge(store, cv, NOW * 1000 + 10)
        assert limited.value.details["bucket"] == cv.chain[0]
        assert (await store.remaining(pv, now_ms=NOW * 1000 + 10)) == [2]
        await charge(store, pv, NOW * 1000 + 11)
        await charge(store, pv, NOW * 1000 + 12)
        with pytest.raises(RateLimited):
            await charge(store, pv, NOW * 1000 + 13)


async def test_a_one_shot_token_is_exhausted_after_its_use(
    tmp_path: Path, keyring: cap.Keyring
) -> None:
    """Acceptance 13 (counter part): uses_max 1 gives token_exhausted on the second call."""
    token, _ = cap.issue(
        keyring, audience=AUD, sub="agent-7", tool="text_transform", uses_max=1, now=NOW
    )
    async with TokenStore.open(tmp_path / "tools.db") as store:
        verified = verified_of(token, keyring, store)
        await charge(store, verified, NOW * 1000)
        with pytest.raises(RateLimited) as exhausted:
            await charge(store, verified, NOW * 1000 + 1)
        assert exhausted.value.details["reason"] == "token_exhausted"


async def test_revocations_counts_and_exhaustion_survive_a_reopen(
    tmp_path: Path, keyring: cap.Keyring
) -> None:
    """Acceptance 12 and the persistence part of 14 (reopen, not kill -9): revoking a root jti
    kills two generations of descendants, a revoked caveat id leaves the parent working, and
    3 of 5 calls used stay used."""
    db = tmp_path / "tools.db"

    def mint(**kwargs: Any) -> str:
        token, _ = cap.issue(
            keyring, audience=AUD, sub="agent-7", tool="text_transform", now=NOW, **kwargs
        )
        return token

    counted, doomed, one_shot, branching = (
        mint(rate_limit=(5, 60)),
        mint(),
        mint(uses_max=1),
        mint(),
    )
    child = cap.append_caveat(doomed, {"id": cap.new_id()})
    grandchild = cap.append_caveat(child, {"id": cap.new_id()})
    branch = cap.append_caveat(branching, {"id": cap.new_id()})
    async with TokenStore.open(db) as store:
        for i in range(3):
            await charge(store, verified_of(counted, keyring, store), NOW * 1000 + i)
        await charge(store, verified_of(one_shot, keyring, store), NOW * 1000)
        dv = verified_of(doomed, keyring, store)
        await store.revoke(dv.jti, prune_after=dv.exp, reason="test", by="operator")
        bv = verified_of(branch, keyring, store)
        await store.revoke(bv.chain[0], prune_after=bv.exp, reason="test", by="operator")
    async with TokenStore.open(db) as store:
        for token in (doomed, child, grandchild, branch):
            with pytest.raises(Unauthenticated) as revoked:
                verified_of(token, keyring, store)
            assert revoked.value.details["reason"] == "token_revoked"
        verified_of(branching, keyring, store)
        cv = verified_of(counted, keyring, store)
        await charge(store, cv, NOW * 1000 + 10)
        await charge(store, cv, NOW * 1000 + 11)
        with pytest.raises(RateLimited):
            await charge(store, cv, NOW * 1000 + 12)
        with pytest.raises(RateLimited) as exhausted:
            await charge(store, verified_of(one_shot, keyring, store), NOW * 1000 + 13)
        assert exhausted.value.details["reason"] == "token_exhausted"
        assert (await store.audit.verify()).ok
