"""Clocks and the unit of work: one transaction plus copy-on-write staging of records."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from aios_scheduler.models import Agent, Client, Group, Job
from aios_shared.db import Transaction

__all__ = ["Clock", "FrozenClock", "Telemetry", "WallClock", "Work"]


class Clock(Protocol):
    def now_ms(self) -> int: ...


class WallClock:
    """Wall-clock UTC epoch milliseconds (never monotonic: it must mean something after a
    restart)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass
class FrozenClock:
    """Test mode: time moves only through ``test_advance_clock``; persisted across restarts."""

    value_ms: int

    def now_ms(self) -> int:
        return self.value_ms


@dataclass(frozen=True)
class Telemetry:
    event: str
    level: str
    data: dict[str, Any]


@dataclass
class Work:
    """One mutating call: the open transaction, the time it runs at, and staged copies of every
    record it changes. The service installs the staged records only after COMMIT."""

    tx: Transaction
    now: int
    live_clients: dict[str, Client]
    live_agents: dict[str, Agent]
    live_groups: dict[str, Group]
    live_jobs: dict[str, Job]
    clients: dict[str, Client] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    telemetry: list[Telemetry] = field(default_factory=list)
    uris: set[str] = field(default_factory=set)
    reputations: dict[str, tuple[float, int]] = field(default_factory=dict)

    def client(self, client_id: str) -> Client:
        staged = self.clients.get(client_id)
        if staged is None:
            staged = self.live_clients[client_id].model_copy()
            self.clients[client_id] = staged
        return staged

    def agent(self, agent_id: str) -> Agent:
        staged = self.agents.get(agent_id)
        if staged is None:
            staged = self.live_agents[agent_id].model_copy()
            self.agents[agent_id] = staged
        return staged

    def group(self, group_id: str) -> Group:
        staged = self.groups.get(group_id)
        if staged is None:
            staged = self.live_groups[group_id].model_copy()
            self.groups[group_id] = staged
        return staged

    def job(self, job: Job) -> Job:
        """The staged copy of ``job`` (a live job, or one just read from the database)."""
        staged = self.jobs.get(job.job_id)
        if staged is None:
            staged = job.model_copy()
            self.jobs[job.job_id] = staged
        return staged

    def emit(self, event: str, level: str = "info", **data: Any) -> None:
        self.telemetry.append(Telemetry(event, level, data))
