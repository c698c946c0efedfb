"""``aios-agent``: a worker process that runs one declarative agent.

    aios-agent --definition agents/echo.yaml --scheduler-url http://127.0.0.1:8766/mcp

It registers the agent (once), leases jobs with ``dispatch_next`` and runs the pipeline's steps
durably: ``step_begin`` says whether a step already completed (its stored result is replayed,
the step is not run again); otherwise the step runs and ``step_complete`` memoizes it. The
scheduler token comes from ``AIOS_SCHEDULER_TOKEN``; peer servers from ``AIOS_PEERS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aios_scheduler.definitions import AgentDefinition, load_definition
from aios_scheduler.steps import run_step
from aios_shared.errors import AiosError, SubsystemUnavailable, error_from_payload
from aios_shared.peers import PeerPool, peers_from_environment
from aios_shared.telemetry import configure_logging

__all__ = ["Worker", "main"]

logger = logging.getLogger("aios_scheduler.agent")

EXIT_CONFIG_ERROR = 2


async def _call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a scheduler tool; a typed error result is raised as the same ``AiosError``."""
    result = await client.call_tool(tool, arguments)
    content = result.structured_content
    if result.is_error:
        if isinstance(content, dict) and "code" in content:
            raise error_from_payload(content)
        raise AiosError(f"{tool} failed: {result.content}")
    assert isinstance(content, dict), content
    return content


class Worker:
    """Leases jobs for one agent and runs its pipeline durably."""

    def __init__(self, definition: AgentDefinition, client: Client, peers: PeerPool) -> None:
        self.definition = definition
        self.client = client
        self.peers = peers

    async def register(self) -> None:
        arguments = self.definition.model_dump(mode="json", exclude={"steps"})
        result = await self.client.call_tool("register_agent", arguments)
        content = result.structured_content or {}
        reason = content.get("details", {}).get("reason") if result.is_error else None
        if result.is_error and reason != "already_exists":
            raise error_from_payload(content)

    async def run(self, jobs_max: int | None, wait_s: float) -> int:
        """Lease and run jobs until ``jobs_max`` are done (forever when None)."""
        done = 0
        while jobs_max is None or done < jobs_max:
            leased = await _call(
                self.client, "dispatch_next", agent_id=self.definition.agent_id, wait_s=wait_s
            )
            if leased["job"] is None:
                continue
            await self.run_job(leased["job"], leased["lease_id"])
            done += 1
        return done

    async def run_job(self, job: dict[str, Any], lease_id: str) -> None:
        job_id = job["job_id"]
        results: dict[str, Any] = {}
        for step in self.definition.steps:
            begun = await _call(
                self.client, "step_begin", job_id=job_id, lease_id=lease_id, step_id=step.id
            )
            if begun["cached"]:
                results[step.id] = begun["result"]
                continue
            started = time.perf_counter()
            try:
                value = await run_step(
                    step, job["input"], results, self.peers, f"{job_id}:{step.id}"
                )
            except AiosError as error:
                await self._fail(job_id, lease_id, step.id, error)
                return
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            stored = await _call(
                self.client,
                "step_complete",
                job_id=job_id,
                lease_id=lease_id,
                step_id=step.id,
                result=value,
                elapsed_ms=elapsed_ms,
            )
            results[step.id] = stored["result"]
        final = results[self.definition.steps[-1].id]
        await _call(self.client, "complete_job", job_id=job_id, lease_id=lease_id, result=final)
        logger.info("agent.job_completed", extra={"job_id": job_id})

    async def _fail(self, job_id: str, lease_id: str, step_id: str, error: AiosError) -> None:
        # A missing or failing peer is retried with backoff (it is not the agent's fault).
        kind = "timeout" if isinstance(error, SubsystemUnavailable) else "invalid_output"
        message = f"{error.code}: {error.message}"
        logger.warning("agent.step_failed", extra={"job_id": job_id, "step_id": step_id})
        await _call(
            self.client,
            "step_fail",
            job_id=job_id,
            lease_id=lease_id,
            step_id=step_id,
            kind=kind,
            message=message,
        )


async def serve_worker(
    definition: AgentDefinition, url: str, token: str | None, jobs_max: int | None, wait_s: float
) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
        PeerPool.open(peers_from_environment(os.environ)) as peers,
    ):
        worker = Worker(definition, client, peers)
        await worker.register()
        return await worker.run(jobs_max, wait_s)


def parse_flags(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aios-agent", description=__doc__.split("\n")[0])
    parser.add_argument("--definition", type=Path, required=True, help="agent YAML or JSON")
    parser.add_argument("--scheduler-url", required=True, help="the scheduler's /mcp URL")
    parser.add_argument("--jobs", type=int, default=None, help="exit after this many jobs")
    parser.add_argument("--wait-s", type=float, default=10.0, help="long-poll per dispatch")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    if sys.flags.optimize:
        sys.exit("aios-agent: run without -O (assertions guard invariants)")
    flags = parse_flags(argv)
    configure_logging("agent", flags.log_level)
    try:
        definition = load_definition(flags.definition)
    except AiosError as error:
        sys.stderr.write(f"aios-agent: {error.for_caller()}\n")
        sys.exit(EXIT_CONFIG_ERROR)
    token = os.environ.get("AIOS_SCHEDULER_TOKEN")
    try:
        anyio.run(serve_worker, definition, flags.scheduler_url, token, flags.jobs, flags.wait_s)
    except* KeyboardInterrupt:
        pass
    except* AiosError as group:
        # A refusal from the scheduler (unknown group, bad profile): say it, no traceback.
        reasons = "; ".join(_messages(group))
        sys.stderr.write(f"aios-agent: the scheduler refused {definition.agent_id}: {reasons}\n")
        sys.exit(EXIT_CONFIG_ERROR)
    except* (httpx2.HTTPError, OSError) as group:
        reason = group.exceptions[0]
        sys.stderr.write(
            f"aios-agent: cannot reach the scheduler at {flags.scheduler_url}: {reason}\n"
        )
        sys.exit(EXIT_UNREACHABLE)


EXIT_UNREACHABLE = 3


def _messages(group: BaseExceptionGroup[AiosError]) -> list[str]:
    found: list[str] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found.extend(_messages(error))
        else:
            found.append(error.for_caller())
    return found


if __name__ == "__main__":
    main()
