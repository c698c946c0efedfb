"""The running host: its children, their merged catalog, and the upstream router.

Owned by the host server's lifespan. Boot starts the children in dependency order, each gated
on its health (an MCP handshake and a catalog read); a child whose dependency failed is not
started and is reported failed with that reason.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.server.subscriptions import SubscriptionBus
from pydantic import BaseModel, ConfigDict

from aios_host.catalog import Catalog, CollisionError, build_catalog
from aios_host.child import ChildServer, ChildStatus, PeerAddress
from aios_host.config import HostLayout, HostSettings
from aios_host.upstream import Upstream
from aios_shared.audit import GENESIS_HASH, AuditLog, audit_migration
from aios_shared.db import Database
from aios_shared.errors import InvalidArgument, NotFound

__all__ = ["HostState", "HostStatus", "running_host"]

logger = logging.getLogger(__name__)

HOST_VERSION = "0.1.0"


class AuditHead(BaseModel):
    """The newest entry of the host's hash-chained audit log ($AIOS_HOME/host.db)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: int
    entry_hash: str


class HostStatus(BaseModel):
    """The host and each child, as ``host_status`` and ``aios://host/status`` report them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    transport: str
    pid: int
    uptime_s: float
    tools: int
    audit_head: AuditHead
    children: list[ChildStatus]


class HostState:
    def __init__(
        self,
        settings: HostSettings,
        layout: HostLayout,
        host_tools: list[types.Tool],
        bus: SubscriptionBus,
        audit: AuditLog,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.audit_head = AuditHead(position=0, entry_hash=GENESIS_HASH)
        self._reported_states: dict[str, str] = {}
        self.layout = layout
        self.children: dict[str, ChildServer] = {}
        self.host_tools = host_tools
        self.catalog: Catalog = build_catalog(host_tools, [], strict=True)
        self.upstream = Upstream(self._catalog_changed, bus)
        self.booted = False
        self.started_at = time.monotonic()
        self._validators: dict[str, Any] = {}
        self._urls: dict[str, str | None] = {}
        self._group: TaskGroup | None = None

    def rebuild_catalog(self, *, strict: bool) -> None:
        self.catalog = build_catalog(
            self.host_tools,
            [(name, child.spec.namespace, child.catalog) for name, child in self.children.items()],
            strict=strict,
        )
        self._validators.clear()

    def _peers_of(self, dependencies: list[str]) -> Callable[[], dict[str, PeerAddress]]:
        """The current addresses of a child's peers, read at each (re)start of the child."""

        def current() -> dict[str, PeerAddress]:
            return {
                name: address
                for name in dependencies
                if (address := self.children[name].peer_address()) is not None
            }

        return current

    async def record(self, action: str, subject: str, outcome: str, **details: Any) -> None:
        """Append a supervision decision to the host's audit chain (DESIGN.md section 8)."""
        entry = await self.audit.append("host", action, subject, outcome, details)
        self.audit_head = AuditHead(position=entry.position, entry_hash=entry.entry_hash)

    async def _audit_transition(self, name: str) -> None:
        child = self.children[name]
        previous = self._reported_states.get(name)
        self._reported_states[name] = child.state
        if previous is None or previous == child.state:
            return
        if child.state in ("restarting", "failed", "stopped"):
            await self.record(f"child.{child.state}", name, "ok", detail=child.detail)
        elif child.state == "running" and previous == "restarting":
            await self.record("child.restarted", name, "ok", restarts_total=child.restarts_total)

    async def _catalog_changed(self, child: str) -> None:
        if not self.booted:
            return
        await self._audit_transition(child)
        await self._restart_dependants_if_moved(child)
        self.rebuild_catalog(strict=False)
        await self.upstream.broadcast_list_changed()

    async def _restart_dependants_if_moved(self, name: str) -> None:
        """A restarted child normally keeps its URL; when it had to move, the dependants hold
        a stale peer address and cannot recover by reconnecting, so restart them."""
        child = self.children[name]
        if child.state != "running":
            return
        previous = self._urls.get(name)
        self._urls[name] = child.url
        if previous is None or previous == child.url:
            return
        for dependant in self.children.values():
            if name in dependant.spec.depends_on and dependant.state == "running":
                logger.warning(
                    "child.peer_moved", extra={"child": dependant.spec.name, "peer": name}
                )
                await dependant.kill()

    def status(self) -> HostStatus:
        return HostStatus(
            name=self.settings.name,
            version=HOST_VERSION,
            transport=self.settings.transport,
            pid=os.getpid(),
            uptime_s=round(time.monotonic() - self.started_at, 3),
            tools=len(self.catalog.tools),
            audit_head=self.audit_head,
            children=[child.status() for child in self.children.values()],
        )

    def child(self, name: str) -> ChildServer:
        child = self.children.get(name)
        if child is None:
            known = ", ".join(self.children) or "none"
            raise NotFound(f"No server named {name!r}.", hint=f"Known servers: {known}.")
        return child

    def validate_arguments(
        self, public_name: str, tool: types.Tool, arguments: dict[str, Any]
    ) -> None:
        """Check arguments against the tool's input schema before forwarding, so every tool,
        ours or third-party, answers bad input with the same typed ``invalid_argument``."""
        validator = self._validators.get(public_name)
        if validator is None:
            schema = tool.input_schema
            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError:
                logger.warning("tool.bad_schema", extra={"tool": public_name})
                return
            validator = cls(schema)
            self._validators[public_name] = validator
        errors = sorted(validator.iter_errors(arguments), key=lambda error: list(error.path))
        if errors:
            problems = "; ".join(
                f"{'/'.join(str(part) for part in error.path) or '(arguments)'}: {error.message}"
                for error in errors[:5]
            )
            raise InvalidArgument(
                f"Invalid arguments for {public_name}: {problems}.",
                hint="Call tools/list for the tool's input schema.",
                details={"tool": public_name, "errors": len(errors)},
            )

    async def restart_child(self, name: str) -> str:
        """Operator restart: kill a running child (the supervisor brings it back) or give a
        failed/stopped child a fresh restart budget."""
        child = self.child(name)
        await self.record("operator.restart", name, "ok", state=child.state)
        if child.state in ("failed", "stopped"):
            assert self._group is not None, "restart before boot"
            child.intensity.restarts.clear()
            await self._group.start(child.run)
            return child.state
        await child.kill()
        return "restarting"

    async def boot(self, group: TaskGroup, run_dir: Path) -> None:
        self._group = group
        for spec in self.layout.start_order():
            child = ChildServer(
                spec,
                self.upstream,
                run_dir,
                peers=self._peers_of(spec.depends_on),
                home=self.settings.home,
                list_pages_max=self.settings.list_pages_max,
            )
            self.children[spec.name] = child
            failed = [dep for dep in spec.depends_on if self.children[dep].state != "running"]
            if failed:
                child.state = "failed"
                child.detail = f"not started: dependency {', '.join(failed)} is not running"
                logger.error("child.not_started", extra={"child": spec.name, "missing": failed})
                continue
            logger.info("child.starting", extra={"child": spec.name})
            await group.start(child.run)
            logger.info("child.started", extra={"child": spec.name, "state": child.state})
        self.rebuild_catalog(strict=True)
        self._urls = {name: child.url for name, child in self.children.items()}
        self._reported_states = {name: child.state for name, child in self.children.items()}
        await self.record(
            "host.boot", self.settings.name, "ok", children=dict(self._reported_states)
        )
        self.booted = True


@asynccontextmanager
async def running_host(
    settings: HostSettings,
    layout: HostLayout,
    host_tools: list[types.Tool],
    bus: SubscriptionBus,
) -> AsyncIterator[HostState]:
    """Boot the children, yield the state, stop them all on exit.

    Raises:
        CollisionError: two children offer the same public name.
    """
    database = Database.open(
        settings.home / "host.db", migrations=[audit_migration(1)], synchronous="FULL"
    )
    async with database as db:
        state = HostState(settings, layout, host_tools, bus, AuditLog(db))
        async with _booted(state) as booted:
            yield booted


@asynccontextmanager
async def _booted(state: HostState) -> AsyncIterator[HostState]:
    with tempfile.TemporaryDirectory(prefix="aios-host-") as run_dir:
        async with anyio.create_task_group() as group:
            try:
                await state.boot(group, Path(run_dir))
            except CollisionError:
                group.cancel_scope.cancel()
                raise
            logger.info("host.ready", extra={"tools": len(state.catalog.tools)})
            try:
                yield state
            finally:
                group.cancel_scope.cancel()
