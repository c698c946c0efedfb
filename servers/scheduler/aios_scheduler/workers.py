"""Supervision of agent worker PROCESSES (spec/scheduler.md section 3.1).

The scheduler starts one ``aios-agent`` process per agent definition and watches it. An exit is
reported to the service like ``report_exit`` (nonzero or a signal = crash), which applies the
group's restart intensity and strategy; the processes of every agent in the restart set are
stopped (SIGTERM, ``shutdown_s`` grace, then SIGKILL) and started again. A temporary agent, a
transient agent that exited cleanly, a stopped agent and an agent of a halted supervisor are
not restarted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
from anyio.abc import Process, TaskStatus

from aios_scheduler.config import SchedulerSettings
from aios_scheduler.definitions import AgentDefinition, load_definition
from aios_scheduler.service import SchedulerService
from aios_shared.errors import AiosError

__all__ = ["ListeningUrl", "WorkerSupervisor"]

logger = logging.getLogger(__name__)

RESTART_DELAY_S: Final = 0.2
UNREGISTERED_EXITS_MAX: Final = 5


@dataclass
class ListeningUrl:
    """The scheduler's own /mcp URL, known once the HTTP server listens. Built before the
    event loop runs, so its event is made on first use inside the loop."""

    url: str | None = None
    _ready: anyio.Event | None = None

    def _event(self) -> anyio.Event:
        if self._ready is None:
            self._ready = anyio.Event()
        return self._ready

    def set(self, url: str) -> None:
        self.url = url
        self._event().set()

    async def wait(self) -> str:
        await self._event().wait()
        assert self.url is not None, "ready without a URL"
        return self.url


class WorkerSupervisor:
    """Keeps one worker process per agent definition alive, per the supervision rules."""

    def __init__(
        self, service: SchedulerService, settings: SchedulerSettings, listening: ListeningUrl
    ) -> None:
        self.service = service
        self.settings = settings
        self.listening = listening
        self.definitions: list[tuple[Path, AgentDefinition]] = [
            (path, load_definition(path)) for path in settings.agents
        ]
        self.processes: dict[str, Process] = {}
        self.restarting: set[str] = set()

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        url = await self.listening.wait()
        async with anyio.create_task_group() as group:
            for path, definition in self.definitions:
                group.start_soon(self._keep, path, definition, url)

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self.settings.auth_token is not None:
            environment["AIOS_SCHEDULER_TOKEN"] = self.settings.auth_token.get_secret_value()
        return environment

    async def _keep(self, path: Path, definition: AgentDefinition, url: str) -> None:
        agent_id = definition.agent_id
        unregistered = 0
        while True:
            process = await anyio.open_process(
                [
                    sys.executable,
                    "-m",
                    "aios_scheduler.agent_main",
                    "--definition",
                    str(path),
                    "--scheduler-url",
                    url,
                ],
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None,
            )
            self.processes[agent_id] = process
            try:
                code = await process.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    await _terminate(process, 5.0)
            logger.warning("worker.exited", extra={"agent_id": agent_id, "exit_code": code})
            if agent_id in self.restarting:
                self.restarting.discard(agent_id)
                continue
            try:
                report = await self.service.report_exit(agent_id, code, f"exit {code}")
            except AiosError:
                unregistered += 1
                if unregistered >= UNREGISTERED_EXITS_MAX:
                    logger.error("worker.gave_up", extra={"agent_id": agent_id})
                    return
                await anyio.sleep(RESTART_DELAY_S * unregistered)
                continue
            for sibling in report["restarted"]:
                if sibling != agent_id:
                    await self._restart_sibling(sibling)
            if not self._restart_wanted(agent_id, code):
                logger.info("worker.not_restarted", extra={"agent_id": agent_id})
                return
            await anyio.sleep(RESTART_DELAY_S)

    def _restart_wanted(self, agent_id: str, code: int) -> bool:
        agent = self.service.agents[agent_id]
        if agent.status == "stopped" or self.service.halted:
            return False
        return not (code == 0 and agent.restart != "permanent")

    async def _restart_sibling(self, agent_id: str) -> None:
        process = self.processes.get(agent_id)
        if process is None or process.returncode is not None:
            return
        self.restarting.add(agent_id)
        grace = self.service.agents[agent_id].shutdown_s
        await _terminate(process, grace)


async def _terminate(process: Process, grace_s: float) -> None:
    """SIGTERM, up to ``grace_s`` to exit, then SIGKILL."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    with anyio.move_on_after(grace_s):
        await process.wait()
        return
    process.kill()
    await process.wait()
