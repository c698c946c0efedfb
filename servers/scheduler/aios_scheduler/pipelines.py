"""Streaming pipelines (spec/scheduler.md section 3.5): ordered stages, checked topic sets,
a durable gap-free event log per pipeline and per-stage ack cursors."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, Final

from aios_scheduler.errors import bad_argument, invalid_state, reasoned, unauthorized_publish
from aios_scheduler.locking import serialized
from aios_scheduler.models import Group
from aios_scheduler.service import SchedulerService
from aios_scheduler.work import Work
from aios_shared.errors import Conflict, InvalidArgument, NotFound

__all__ = ["PipelineService", "violations"]

TYPE_NAME: Final = re.compile(r"^[a-z0-9_]{1,64}$")
STAGES_MAX: Final = 32


def violations(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every stage that subscribes to a type no earlier stage publishes, in stage order."""
    published: set[str] = set()
    found: list[dict[str, Any]] = []
    for stage in stages:
        missing = sorted(set(stage["subscribes"]) - published)
        if missing:
            found.append({"stage": stage["name"], "missing": missing})
        published |= set(stage["publishes"])
    return found


def _check_stages(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not 1 <= len(stages) <= STAGES_MAX:
        raise bad_argument(f"A pipeline has 1-{STAGES_MAX} stages; got {len(stages)}.")
    names: set[str] = set()
    checked: list[dict[str, Any]] = []
    for stage in stages:
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str):
            raise bad_argument("Each stage is an object with a name.")
        name = stage["name"]
        if not TYPE_NAME.match(name):
            raise bad_argument(f"Stage name {name!r} must match [a-z0-9_]{{1,64}}.")
        if name in names:
            raise bad_argument(f"Duplicate stage name {name!r}.")
        names.add(name)
        topics: dict[str, list[str]] = {}
        for field in ("publishes", "subscribes"):
            values = stage.get(field, [])
            if not isinstance(values, list) or not all(
                isinstance(v, str) and TYPE_NAME.match(v) for v in values
            ):
                raise bad_argument(
                    f"Stage {name!r}: {field} must be event type names matching [a-z0-9_]{{1,64}}."
                )
            topics[field] = sorted(set(values))
        extra = set(stage) - {"name", "publishes", "subscribes", "agent_id"}
        if extra:
            raise bad_argument(f"Stage {name!r} has unknown fields {sorted(extra)}.")
        checked.append({"name": name, **topics, "agent_id": stage.get("agent_id")})
    return checked


def _not_found(pipeline_id: str) -> Exception:
    return reasoned(
        NotFound, "pipeline_not_found", f"No pipeline {pipeline_id!r}.", pipeline_id=pipeline_id
    )


class PipelineService:
    """Pipelines live in the scheduler's database and share its writer and lock."""

    def __init__(self, service: SchedulerService) -> None:
        self.service = service
        self.store = service.store
        self._lock = service._lock
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.sequences: dict[str, int] = {}

    async def load(self) -> None:
        for body in await self.store.load_pipelines():
            self.pipelines[body["pipeline_id"]] = body
            self.sequences[body["pipeline_id"]] = await self.store.next_sequence(
                body["pipeline_id"]
            )

    def get(self, pipeline_id: str) -> dict[str, Any]:
        found = self.pipelines.get(pipeline_id)
        if found is None:
            raise _not_found(pipeline_id)
        return found

    @serialized
    async def create(self, name: str, stages: list[dict[str, Any]], supervise: bool) -> str:
        if not TYPE_NAME.match(name or ""):
            raise bad_argument(f"Pipeline name {name!r} must match [a-z0-9_]{{1,64}}.")
        checked = _check_stages(stages)
        found = violations(checked)
        if found:
            raise reasoned(
                InvalidArgument,
                "pipeline_constraint_violation",
                "Stages subscribe to event types no earlier stage publishes: "
                + "; ".join(f"{v['stage']} misses {', '.join(v['missing'])}" for v in found)
                + ".",
                violations=found,
            )
        pipeline_id = f"pipe_{name}_{secrets.token_hex(4)}"
        members = [stage["agent_id"] for stage in checked if stage["agent_id"] is not None]
        if supervise:
            for agent_id in members:
                agent = self.service.agent(agent_id)
                if agent.status != "idle":
                    raise invalid_state("agent", agent.status, ["idle"])
        async with self.service._work() as work:
            if supervise:
                self._supervise(work, pipeline_id, members)
            body = {
                "pipeline_id": pipeline_id,
                "name": name,
                "stages": checked,
                "status": "created",
                "supervise": supervise,
                "created_at": work.now,
            }
            await self.store.save_pipeline(work.tx, pipeline_id, body)
        self.pipelines[pipeline_id] = body
        self.sequences[pipeline_id] = 0
        return pipeline_id

    def _supervise(self, work: Work, pipeline_id: str, members: list[str]) -> None:
        """A rest_for_one group whose start order is the stage order (section 3.5): a crash
        of a stage restarts it and every later stage."""
        work.groups[pipeline_id] = Group(group_id=pipeline_id, strategy="rest_for_one")
        for order, agent_id in enumerate(members, start=1):
            agent = work.agent(agent_id)
            agent.group_id = pipeline_id
            agent.start_order = order

    def _stage(self, pipeline: dict[str, Any], stage: str) -> dict[str, Any]:
        for candidate in pipeline["stages"]:
            if candidate["name"] == stage:
                return dict(candidate)
        raise reasoned(NotFound, "unknown_stage", f"Pipeline has no stage {stage!r}.", stage=stage)

    @serialized
    async def publish(
        self, pipeline_id: str, stage: str, event_type: str, data: Any
    ) -> dict[str, Any]:
        pipeline = self.get(pipeline_id)
        if pipeline["status"] in ("completed", "failed"):
            raise reasoned(
                Conflict, "pipeline_closed", f"Pipeline {pipeline_id} is {pipeline['status']}."
            )
        declared = self._stage(pipeline, stage)
        if event_type not in declared["publishes"]:
            raise unauthorized_publish(stage, event_type)
        limit = self.service.limits.event_data_bytes_max
        if len(json.dumps(data).encode()) > limit:
            raise bad_argument(f"Event data exceeds event_data_bytes_max={limit}.")
        sequence = self.sequences[pipeline_id]
        event_id = "evt_" + secrets.token_hex(6)
        updated = dict(pipeline)
        async with self.service._work() as work:
            await self.store.add_event(
                work.tx,
                {
                    "pipeline_id": pipeline_id,
                    "sequence": sequence,
                    "event_id": event_id,
                    "stage": stage,
                    "type": event_type,
                    "data": data,
                    "timestamp": work.now,
                },
            )
            if updated["status"] == "created":
                updated["status"] = "running"
                await self.store.save_pipeline(work.tx, pipeline_id, updated)
            work.uris.add(f"scheduler://pipelines/{pipeline_id}")
        self.pipelines[pipeline_id] = updated
        self.sequences[pipeline_id] = sequence + 1
        return {"event_id": event_id, "sequence": sequence}

    async def read(
        self, pipeline_id: str, stage: str, after_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        pipeline = self.get(pipeline_id)
        declared = self._stage(pipeline, stage)
        if not 1 <= limit <= self.service.limits.read_events_limit_max:
            raise bad_argument(f"limit must be 1-{self.service.limits.read_events_limit_max}.")
        after = await self.store.cursor(pipeline_id, stage) if after_seq is None else after_seq
        return await self.store.events(pipeline_id, declared["subscribes"], after, limit)

    @serialized
    async def ack(self, pipeline_id: str, stage: str, up_to_seq: int) -> int:
        pipeline = self.get(pipeline_id)
        self._stage(pipeline, stage)
        if up_to_seq < 0 or up_to_seq >= self.sequences[pipeline_id]:
            raise bad_argument(
                f"up_to_seq={up_to_seq} is not a published sequence of this pipeline."
            )
        current = await self.store.cursor(pipeline_id, stage)
        if up_to_seq <= current:
            return current
        async with self.service._work() as work:
            await self.store.set_cursor(work.tx, pipeline_id, stage, up_to_seq)
        return up_to_seq

    @serialized
    async def complete(self, pipeline_id: str, status: str) -> dict[str, Any]:
        pipeline = self.get(pipeline_id)
        if status not in ("completed", "failed"):
            raise bad_argument("status must be completed or failed.")
        if pipeline["status"] in ("completed", "failed"):
            raise reasoned(
                Conflict, "pipeline_closed", f"Pipeline {pipeline_id} is {pipeline['status']}."
            )
        updated = {**pipeline, "status": status}
        async with self.service._work() as work:
            await self.store.save_pipeline(work.tx, pipeline_id, updated)
            work.uris.add(f"scheduler://pipelines/{pipeline_id}")
        self.pipelines[pipeline_id] = updated
        return updated
