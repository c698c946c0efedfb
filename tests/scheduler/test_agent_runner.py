"""The ``aios-agent`` worker and the scheduler's supervision of worker processes: a sample
agent runs a job from pending to completed; peer steps fail with subsystem_unavailable when
the peer is not configured; kill -9 of a worker replays its completed steps from the memo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aios_scheduler.definitions import load_definition
from tests.helpers import REPO, poll_until, stop
from tests.scheduler.support import HttpScheduler, http_scheduler, ok, read_json

pytestmark = pytest.mark.anyio

SAMPLE = REPO / "servers" / "scheduler" / "agents" / "echo.yaml"


def _slow_agent(directory: Path, agent_id: str, steps: int = 6, **extra: object) -> Path:
    definition = {
        "agent_id": agent_id,
        "profile": {"name": "slow"},
        "shutdown_s": 1,
        "steps": [{"id": f"s{n}", "kind": "sleep", "seconds": 0.4} for n in range(1, steps + 1)],
        **extra,
    }
    path = directory / f"{agent_id}.json"
    path.write_text(json.dumps(definition), encoding="utf-8")
    return path


def _worker(server: HttpScheduler, definition: Path, *flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aios_scheduler.agent_main",
            "--definition",
            str(definition),
            "--scheduler-url",
            server.url,
            "--wait-s",
            "1",
            "--log-level",
            "warning",
            *flags,
        ],
        env={**os.environ, "AIOS_SCHEDULER_TOKEN": server.token, "AIOS_PEERS": ""},
        cwd=str(REPO),
        stdout=subprocess.DEVNULL,
    )


def _children_running(parent: int, module: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().decode()
            status = (entry / "status").read_text()
        except OSError:
            continue
        parent_line = next(line for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent_line.split()[1]) == parent and module in arguments:
            found.append(int(entry.name))
    return found


def test_the_sample_agent_definition_is_valid() -> None:
    """The shipped sample agent loads and runs echo, transform and sleep steps."""
    definition = load_definition(SAMPLE)
    assert [step.kind for step in definition.steps] == ["echo", "transform", "sleep", "transform"]


async def test_a_supervised_sample_agent_takes_a_job_to_completed(tmp_path: Path) -> None:
    """The demo: the scheduler starts the sample agent's worker; a submitted job goes from
    pending to completed with the pipeline's result."""
    with http_scheduler(tmp_path, "--agent", str(SAMPLE)) as server:
        async with server.connect() as client:
            await ok(client, "register_client", client_id="demo", tier="marketplace", credits=10)
            submitted = await ok(client, "submit_job", client_id="demo", task="echo", input="hi")
            done = await ok(
                client, "wait_job", job_id=submitted["job_id"], states=["completed"], timeout_s=60
            )
            steps = await read_json(client, f"scheduler://jobs/{submitted['job_id']}/steps")
    assert submitted["state"] == "pending"
    assert done["state"] == "completed"
    assert done["result"] == "echo: HI"
    assert [step["step_id"] for step in steps["steps"]] == ["read", "shout", "pause", "reply"]


async def test_a_peer_step_without_its_peer_fails_with_subsystem_unavailable(
    tmp_path: Path,
) -> None:
    """A tool, LLM or memory step while that peer server is not configured fails the step
    with subsystem_unavailable; with no retries left the job is failed with that reason."""
    definition = tmp_path / "peer.json"
    definition.write_text(
        json.dumps(
            {
                "agent_id": "peer-agent",
                "profile": {"name": "peer"},
                "steps": [
                    {"id": "ask", "kind": "llm", "arguments": {"prompt": "{input}"}},
                ],
            }
        ),
        encoding="utf-8",
    )
    with http_scheduler(tmp_path / "home") as server:
        worker = _worker(server, definition, "--jobs", "1")
        try:
            async with server.connect() as client:
                await ok(client, "register_client", client_id="c", tier="marketplace", credits=5)
                job = await ok(
                    client, "submit_job", client_id="c", task="ask", input="hi", retries_max=0
                )
                failed = await ok(
                    client, "wait_job", job_id=job["job_id"], states=["failed"], timeout_s=60
                )
        finally:
            stop(worker)
    assert failed["state"] == "failed"
    assert failed["error"]["message"].startswith("subsystem_unavailable")


async def test_killing_a_worker_requeues_its_job_and_replays_the_memo(tmp_path: Path) -> None:
    """kill -9 of an unsupervised worker mid-job: its lease expires, the job is
    re-dispatched to a new worker, and the completed steps replay from the memo."""
    definition = _slow_agent(tmp_path, "slow")
    with http_scheduler(tmp_path / "home", "--test-mode") as server:
        async with server.connect() as client:
            await ok(client, "register_client", client_id="c", tier="marketplace", credits=5)
            job = await ok(client, "submit_job", client_id="c", task="slow")
            job_id = job["job_id"]
            first = _worker(server, definition)

            async def two_steps_done() -> int | None:
                steps = (await read_json(client, f"scheduler://jobs/{job_id}/steps"))["steps"]
                done = [s for s in steps if s["status"] == "completed"]
                return len(done) if len(done) >= 2 else None

            completed_before = await poll_until(two_steps_done, deadline_s=60)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            memo = (await read_json(client, f"scheduler://jobs/{job_id}/steps"))["steps"]
            completed_before = sum(1 for s in memo if s["status"] == "completed")
            await ok(client, "test_advance_clock", seconds=30)
            requeued = await ok(client, "get_job", job_id=job_id)
            second = _worker(server, definition, "--jobs", "1")
            try:
                done = await ok(
                    client, "wait_job", job_id=job_id, states=["completed"], timeout_s=60
                )
                steps = (await read_json(client, f"scheduler://jobs/{job_id}/steps"))["steps"]
            finally:
                stop(second)
    assert requeued["state"] == "pending"
    assert done["metrics"]["steps_cached"] == completed_before
    assert done["dispatch_count"] == 2
    assert len(steps) == 6
    finished_before = {m["step_id"] for m in memo if m["status"] == "completed"}
    assert [s["attempts"] for s in steps if s["step_id"] in finished_before] == [1] * len(
        finished_before
    )


async def test_a_supervised_worker_killed_mid_job_is_restarted_and_resumes(
    tmp_path: Path,
) -> None:
    """kill -9 of a worker the scheduler supervises: the exit is a crash, the job is
    requeued at once, the worker process is started again and finishes the job with the
    completed steps replayed from the memo."""
    definition = _slow_agent(tmp_path, "supervised")
    with http_scheduler(tmp_path / "home", "--agent", str(definition)) as server:
        async with server.connect() as client:
            await ok(client, "register_client", client_id="c", tier="marketplace", credits=5)
            job = await ok(client, "submit_job", client_id="c", task="slow")
            job_id = job["job_id"]

            async def some_steps_done() -> int | None:
                steps = (await read_json(client, f"scheduler://jobs/{job_id}/steps"))["steps"]
                done = [s for s in steps if s["status"] == "completed"]
                return len(done) if len(done) >= 2 else None

            await poll_until(some_steps_done, deadline_s=60)
            workers = _children_running(server.process.pid, "aios_scheduler.agent_main")
            assert len(workers) == 1, workers
            os.kill(workers[0], signal.SIGKILL)
            done = await ok(client, "wait_job", job_id=job_id, states=["completed"], timeout_s=60)
            agent = await read_json(client, "scheduler://agents/supervised")
            restarted = _children_running(server.process.pid, "aios_scheduler.agent_main")
    assert done["metrics"]["steps_cached"] >= 2
    assert done["dispatch_count"] == 2
    assert agent["restart_count"] == 1
    assert restarted and restarted != workers
