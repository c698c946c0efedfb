"""The 24 memory types of spec/memory.md section 2.1: one strict pydantic model per type.

Every model forbids unknown fields (``extra="forbid"``) except the free-form ``attributes``
object, rejects NaN and infinities, and applies the defaults of the table. Fields without a
default are ``None`` and dropped from the payload, so they stay absent unless given.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)

__all__ = [
    "ID_PATTERN",
    "TAG_PATTERN",
    "MemoryData",
    "TypeInfo",
    "format_time",
    "parse_time",
]

ID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
TAG_PATTERN: Final = r"^[a-z0-9][a-z0-9_.:-]{0,63}$"
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(moment: datetime) -> str:
    """The one stored time form: ISO-8601 UTC with microseconds and ``Z``."""
    assert moment.tzinfo is not None, moment
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """Parse ISO-8601; a time without an offset is taken as UTC.

    Raises:
        ValueError: not an ISO-8601 date-time.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _canonical_time(text: str) -> str:
    return format_time(parse_time(text))


DateTime = Annotated[str, AfterValidator(_canonical_time)]
MemoryId = Annotated[str, Field(pattern=ID_PATTERN)]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]
JsonObject = dict[str, JsonValue]
Severity = Literal["low", "medium", "high", "critical"]


class MemoryData(BaseModel):
    """Base of every type's data: strict, with the free-form ``attributes`` extension."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    attributes: JsonObject | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


# ---- core ------------------------------------------------------------------------------------


class Fact(MemoryData):
    assertion: str = Field(min_length=1)
    confidence: Confidence = 1.0
    evidence: str | None = None
    source: str | None = None
    valid_until: DateTime | None = None


class Decision(MemoryData):
    decision: str = Field(min_length=1)
    rationale: str = Field(min_length=1)
    alternatives: list[str] | None = None
    context: JsonObject | None = None
    confidence: Confidence = 1.0
    status: Literal["proposed", "accepted", "deprecated", "superseded"] | None = None


class Procedural(MemoryData):
    name: str = Field(min_length=1)
    steps: list[str] = Field(min_length=1)
    preconditions: list[str] | None = None
    postconditions: list[str] | None = None
    warnings: list[str] | None = None


class Episodic(MemoryData):
    event: str = Field(min_length=1)
    outcome: Literal["success", "failure", "partial", "abandoned", "ongoing", "unknown"]
    context: JsonObject | None = None
    participants: list[str] | None = None
    duration_ms: int | None = Field(None, ge=0)
    occurred_at: DateTime | None = None


# ---- extended --------------------------------------------------------------------------------


class Todo(MemoryData):
    title: str = Field(min_length=1)
    description: str | None = None
    assignee: str | None = None
    priority: Severity = "medium"
    status: Literal["pending", "in_progress", "blocked", "done", "cancelled"] = "pending"
    due_at: DateTime | None = None


class Issue(MemoryData):
    title: str = Field(min_length=1)
    severity: Severity
    description: str | None = None
    root_cause: str | None = None
    resolution: str | None = None
    status: Literal["open", "investigating", "resolved", "closed", "wontfix"] = "open"


class ApiParameter(_Strict):
    name: str = Field(min_length=1)
    type: str | None = None
    required: bool | None = None
    description: str | None = None


class Api(MemoryData):
    endpoint: str = Field(min_length=1)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] | None = None
    description: str | None = None
    parameters: list[ApiParameter] | None = None
    request_schema: JsonObject | None = None
    response_schema: JsonObject | None = None
    auth: str | None = None


class SchemaField(_Strict):
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    required: bool | None = None
    description: str | None = None


class SchemaDef(MemoryData):
    name: str = Field(min_length=1)
    kind: Literal["database", "api", "event", "message", "config", "memory"] | None = None
    fields: list[SchemaField] | None = None
    relationships: list[JsonValue] | None = None
    json_schema: JsonObject | None = None


# ---- workflow --------------------------------------------------------------------------------


class Workflow(MemoryData):
    name: str = Field(min_length=1)
    steps: list[JsonValue] = Field(min_length=1)
    description: str | None = None
    trigger: str | None = None
    status: Literal["defined", "running", "paused", "completed", "failed"] = "defined"


class Task(MemoryData):
    name: str = Field(min_length=1)
    workflow_id: MemoryId | None = None
    status: Literal["pending", "running", "completed", "failed", "skipped", "cancelled"] = "pending"
    assigned_agent: str | None = None
    input: JsonObject | None = None
    output: JsonObject | None = None
    error: str | None = None
    retries: int = Field(0, ge=0)
    depends_on: list[MemoryId] | None = None


class Step(MemoryData):
    task_id: MemoryId
    step_number: int = Field(ge=0)
    action: Literal["tool_call", "llm_response", "decision", "observation", "error"] | None = None
    tool_name: str | None = None
    input: JsonObject | None = None
    output: JsonObject | None = None
    duration_ms: int | None = Field(None, ge=0)
    tokens_used: int | None = Field(None, ge=0)
    error: str | None = None


class AgentRun(MemoryData):
    agent_id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    model: str | None = None
    input: JsonObject | None = None
    output: JsonObject | None = None
    result: JsonValue = None
    error: str | None = None
    duration_ms: int | None = Field(None, ge=0)
    status: Literal["running", "completed", "failed", "cancelled", "escalated"] = "running"
    started_at: DateTime | None = None
    completed_at: DateTime | None = None


# ---- metadata --------------------------------------------------------------------------------


class Tag(MemoryData):
    name: str = Field(pattern=TAG_PATTERN)
    description: str | None = None
    parent: str | None = Field(None, pattern=TAG_PATTERN)


class Annotation(MemoryData):
    target_id: MemoryId
    body: str = Field(min_length=1)
    kind: Literal["comment", "question", "highlight", "correction"] = "comment"
    author: str | None = None


class Embedding(MemoryData):
    target_id: MemoryId
    model: str = Field(min_length=1)
    dimensions: int = Field(ge=1, le=4096)
    vector: list[float]

    @field_validator("vector")
    @classmethod
    def _length_matches_dimensions(cls, vector: list[float], info: ValidationInfo) -> list[float]:
        dimensions = info.data.get("dimensions")
        if dimensions is not None and len(vector) != dimensions:
            raise ValueError(f"vector has {len(vector)} numbers but dimensions is {dimensions}")
        return vector


class IndexFilter(_Strict):
    types: list[str] | None = None
    namespace: str | None = None
    tags: list[str] | None = None


class IndexEntry(_Strict):
    key: str = Field(min_length=1)
    memory_id: MemoryId


class Index(MemoryData):
    name: str = Field(min_length=1)
    kind: Literal["keyword", "semantic", "custom"] | None = None
    filter: IndexFilter | None = None
    entries: list[IndexEntry] | None = None


# ---- system ----------------------------------------------------------------------------------


class Config(MemoryData):
    name: str = Field(min_length=1)
    environment: Literal["development", "staging", "production", "test"] | None = None
    settings: JsonObject | None = None
    secret_keys: list[str] | None = None


class Session(MemoryData):
    session_id: str = Field(min_length=1)
    started_at: DateTime
    agent_id: str | None = None
    ended_at: DateTime | None = None
    label: str | None = None
    summary: str | None = None
    state: JsonObject | None = None


class Context(MemoryData):
    name: str = Field(min_length=1)
    scope: str | None = None
    entries: JsonObject | None = None
    source: str | None = None


class Log(MemoryData):
    level: Literal["debug", "info", "warning", "error", "critical"]
    message: str = Field(min_length=1)
    source: str | None = None
    at: DateTime | None = None


# ---- relational ------------------------------------------------------------------------------


class Person(MemoryData):
    name: str = Field(min_length=1)
    role: str | None = None
    email: str | None = None
    affiliation: str | None = None
    aliases: list[str] | None = None


class Project(MemoryData):
    name: str = Field(min_length=1)
    description: str | None = None
    status: Literal["active", "paused", "completed", "archived"] = "active"
    repo_url: str | None = None
    owner: str | None = None


class Artifact(MemoryData):
    name: str = Field(min_length=1)
    kind: Literal["document", "code", "dataset", "model", "report", "image", "other"]
    uri: str | None = None
    media_type: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size_bytes: int | None = Field(None, ge=0)


class Event(MemoryData):
    title: str = Field(min_length=1)
    starts_at: DateTime
    ends_at: DateTime | None = None
    location: str | None = None
    attendees: list[str] | None = None

    @field_validator("ends_at")
    @classmethod
    def _ends_after_start(cls, ends_at: str | None, info: ValidationInfo) -> str | None:
        starts_at = info.data.get("starts_at")
        if ends_at is not None and starts_at is not None and ends_at < starts_at:
            raise ValueError(f"ends_at {ends_at} is before starts_at {starts_at}")
        return ends_at


class TypeInfo(BaseModel):
    """One registered type: its model, subcategory, example and default TTL."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    subcategory: Literal["core", "extended", "workflow", "metadata", "system", "relational"]
    model: type[MemoryData]
    example: dict[str, Any]
    schema_version: int = 1
    default_ttl_s: int | None = None


_ID_A: Final = "00000000-0000-7000-8000-0000000000a1"
_NOW: Final = "2026-03-10T12:00:00.000000Z"


def _info(
    name: str,
    subcategory: Literal["core", "extended", "workflow", "metadata", "system", "relational"],
    model: type[MemoryData],
    example: dict[str, Any],
    default_ttl_s: int | None = None,
) -> TypeInfo:
    return TypeInfo(
        name=name,
        subcategory=subcategory,
        model=model,
        example=example,
        default_ttl_s=default_ttl_s,
    )


TYPES: Final[dict[str, TypeInfo]] = {
    info.name: info
    for info in (
        _info("fact", "core", Fact, {"assertion": "The staging database runs PostgreSQL 16"}),
        _info(
            "decision",
            "core",
            Decision,
            {"decision": "Use SQLite by default", "rationale": "Zero set-up for new users"},
        ),
        _info(
            "procedural",
            "core",
            Procedural,
            {"name": "Deploy", "steps": ["build", "test", "release"]},
        ),
        _info("episodic", "core", Episodic, {"event": "Nightly build", "outcome": "success"}),
        _info("todo", "extended", Todo, {"title": "Write the release notes"}),
        _info("issue", "extended", Issue, {"title": "Login times out", "severity": "high"}),
        _info("api", "extended", Api, {"endpoint": "/v1/users", "method": "GET"}),
        _info(
            "schema_def",
            "extended",
            SchemaDef,
            {"name": "users", "kind": "database", "fields": [{"name": "id", "type": "uuid"}]},
        ),
        _info("workflow", "workflow", Workflow, {"name": "Release", "steps": ["tag", "publish"]}),
        _info("task", "workflow", Task, {"name": "Run the test suite"}),
        _info("step", "workflow", Step, {"task_id": _ID_A, "step_number": 0}, 2_592_000),
        _info("agent_run", "workflow", AgentRun, {"agent_id": "coder", "task": "Fix bug 7"}),
        _info("tag", "metadata", Tag, {"name": "infra", "description": "Infrastructure"}),
        _info("annotation", "metadata", Annotation, {"target_id": _ID_A, "body": "Check this"}),
        _info(
            "embedding",
            "metadata",
            Embedding,
            {"target_id": _ID_A, "model": "mini", "dimensions": 3, "vector": [0.1, 0.2, 0.3]},
        ),
        _info("index", "metadata", Index, {"name": "by-topic", "kind": "keyword"}),
        _info("config", "system", Config, {"name": "editor", "settings": {"tab_width": 4}}),
        _info("session", "system", Session, {"session_id": "s-1", "started_at": _NOW}),
        _info("context", "system", Context, {"name": "current-sprint", "scope": "team"}),
        _info("log", "system", Log, {"level": "info", "message": "Server started"}, 604_800),
        _info("person", "relational", Person, {"name": "Ada Lovelace", "role": "engineer"}),
        _info("project", "relational", Project, {"name": "aios"}),
        _info("artifact", "relational", Artifact, {"name": "report.pdf", "kind": "report"}),
        _info("event", "relational", Event, {"title": "Standup", "starts_at": _NOW}),
    )
}

TYPE_ALIASES: Final[dict[str, str]] = {"schema": "schema_def"}
SUBCATEGORIES: Final = ("core", "extended", "workflow", "metadata", "system", "relational")
TYPE_NAME_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
