"""Memory-server fixtures: a real Bolt server (ArcadeDB, per notes/graph-backend.md), services on
either backend, and a controllable clock.

``NEO4J_URI`` (with ``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``) points the suite at a
real Neo4j 5 instead of the ArcadeDB server this set-up starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aios_memory.config import MemoryLimits, MemorySettings
from aios_memory.service import MemoryService
from aios_memory.store import MemoryStore
from aios_memory.store_sqlite import SqliteStore
from tests.memory.support import (
    BACKENDS,
    GraphServer,
    TickingClock,
    free_port,
    neo4j_store,
    reset_neo4j,
    start_arcadedb,
    stop_process,
)


@pytest.fixture(scope="session")
def graph_server() -> Iterator[GraphServer]:
    """One Bolt server for the memory tests: ArcadeDB from the arcadedb-embedded wheel, or the
    Neo4j named by ``NEO4J_URI``."""
    if os.environ.get("NEO4J_URI"):
        yield GraphServer(
            uri=os.environ["NEO4J_URI"],
            auth=(os.environ.get("NEO4J_USER", "neo4j"), os.environ["NEO4J_PASSWORD"]),
            database=os.environ.get("NEO4J_DATABASE", "neo4j"),
            http=None,
            process=None,
            root=None,
            bolt_port=0,
            http_port=0,
        )
        return
    root = tempfile.mkdtemp(prefix="aios-arcadedb-")
    bolt, http = free_port(), free_port()
    process = start_arcadedb(root, bolt, http)
    try:
        yield GraphServer(
            uri=f"bolt://127.0.0.1:{bolt}",
            auth=("root", "testpassword"),
            database="graph",
            http=f"http://127.0.0.1:{http}",
            process=process,
            root=root,
            bolt_port=bolt,
            http_port=http,
        )
    finally:
        stop_process(process)
        shutil.rmtree(root, ignore_errors=True)


ServiceFactory = Callable[..., AbstractAsyncContextManager[MemoryService]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_service(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> ServiceFactory:
    """``async with open_service(clock=..., **settings) as service`` on the parametrized
    backend (the Neo4j graph is emptied first)."""

    @asynccontextmanager
    async def factory(
        *,
        clock: Callable[[], datetime] | None = None,
        ids: Callable[[], str] | None = None,
        limits: dict[str, Any] | None = None,
        name: str = "memory.db",
        **overrides: Any,
    ) -> AsyncIterator[MemoryService]:
        settings = MemorySettings(
            home=tmp_path,
            database_path=tmp_path / name,
            backend=backend,  # type: ignore[arg-type]  # parametrized literal
            node_id=overrides.pop("node_id", "server-node"),
            limits=MemoryLimits(**(limits or {})),
            **overrides,
        )
        store: MemoryStore
        if backend == "neo4j":
            server: GraphServer = request.getfixturevalue("graph_server")
            await reset_neo4j(server)
            store = neo4j_store(server)
        else:
            store = SqliteStore(settings.sqlite_path())
        async with MemoryService.open(
            settings, store, clock=clock or TickingClock(), ids=ids
        ) as service:
            yield service

    return factory
