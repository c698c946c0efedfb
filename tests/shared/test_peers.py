"""The peer pool: calls between AIOS servers over real Streamable HTTP, with typed errors,
deadlines, fail-fast for absent or dead peers, retries and circuit breaking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aios_shared.errors import Internal, InvalidArgument, NotFound, SubsystemUnavailable, Timeout
from aios_shared.peers import PeerAddress, PeerLimits, PeerPool, peers_from_environment
from tests.helpers import REPO, stop, wait_for_file

pytestmark = pytest.mark.anyio

PEER_SERVER = REPO / "tests" / "shared" / "peer_server.py"
TOKEN = "peer-test-token"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[PeerAddress, subprocess.Popen[bytes]]]:
    ready = tmp_path / "peer.ready"
    log = (tmp_path / "peer.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(PEER_SERVER), "--transport", "http", "--ready-file", str(ready)],
        env={**os.environ, "AIOS_AUTH_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for_file(ready, process, 30, tmp_path / "peer.log")
        url = json.loads(ready.read_text())["url"]
        yield PeerAddress(url=url, token=TOKEN), process
    finally:
        stop(process)
        log.close()


async def test_a_call_returns_the_structured_result_and_carries_a_trace_id(
    peer: tuple[PeerAddress, subprocess.Popen[bytes]],
) -> None:
    address, _ = peer
    async with PeerPool.open({"peer": address}) as pool:
        first = await pool.call("peer", "echo", {"text": "hi"})
        second = await pool.call("peer", "echo", {"text": "again"})
    assert first["text"] == "hi"
    assert len(first["trace_id"]) == 32
    assert second["text"] == "again"


async def test_a_peers_typed_error_is_raised_as_the_same_kind(
    peer: tuple[PeerAddress, subprocess.Popen[bytes]],
) -> None:
    address, _ = peer
    async with PeerPool.open({"peer": address}) as pool:
        with pytest.raises(NotFound, match="No thing named 'x'") as missing:
            await pool.call("peer", "missing", {"name": "x"})
        with pytest.raises(Internal, match="incident") as crashed:
            await pool.call("peer", "crash", {})
        with pytest.raises(InvalidArgument):
            await pool.call("peer", "echo", {"text": 5})
    assert missing.value.details == {"reason": "no_such_thing"}
    assert "secret" not in crashed.value.message


async def test_an_unconfigured_peer_fails_fast_naming_the_known_ones() -> None:
    async with PeerPool.open({}) as pool:
        with pytest.raises(SubsystemUnavailable, match="'inference' server is not available"):
            await pool.call("inference", "chat", {})


async def test_a_call_past_its_deadline_is_a_timeout(
    peer: tuple[PeerAddress, subprocess.Popen[bytes]],
) -> None:
    address, _ = peer
    async with PeerPool.open({"peer": address}) as pool:
        with pytest.raises(Timeout, match=r"did not answer sleep within 0\.2 s"):
            await pool.call("peer", "sleep", {"seconds": 5}, timeout_s=0.2)
        assert (await pool.call("peer", "echo", {"text": "still"}))["text"] == "still"


async def test_a_dead_peer_is_unavailable_and_the_circuit_opens(
    peer: tuple[PeerAddress, subprocess.Popen[bytes]],
) -> None:
    """kill -9 of the peer: calls answer subsystem_unavailable (after bounded retries for an
    idempotent call); repeated failures open the circuit, which then fails without trying."""
    address, process = peer
    limits = PeerLimits(retries_max=1, backoff_initial_s=0.01, failures_to_open=3, open_s=60)
    async with PeerPool.open({"peer": address}, limits) as pool:
        assert (await pool.call("peer", "echo", {"text": "up"}))["text"] == "up"
        process.kill()
        process.wait(10)
        with pytest.raises(SubsystemUnavailable):
            await pool.call("peer", "echo", {"text": "x"}, idempotency_key="k1")
        with pytest.raises(SubsystemUnavailable):
            await pool.call("peer", "echo", {"text": "x"})
        with pytest.raises(SubsystemUnavailable, match="circuit open"):
            await pool.call("peer", "echo", {"text": "x"})


def test_peers_come_from_the_environment_the_host_sets() -> None:
    environ = {"AIOS_PEERS": json.dumps({"tools": {"url": "http://127.0.0.1:1/mcp", "token": "t"}})}
    assert peers_from_environment(environ) == {
        "tools": PeerAddress(url="http://127.0.0.1:1/mcp", token="t")
    }
    assert peers_from_environment({}) == {}
    with pytest.raises(InvalidArgument, match="AIOS_PEERS"):
        peers_from_environment({"AIOS_PEERS": "[1]"})
