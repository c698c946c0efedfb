"""Records of spec/scheduler.md section 2.1, used in the service and on the wire.

The records are plain pydantic models; the service copies a record, changes the copy inside a
transaction and installs it in its in-memory index only after COMMIT (copy-on-write), so a
rolled-back call leaves no trace in memory either.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Agent",
    "AgentProfile",
    "Client",
    "Group",
    "Job",
    "JobError",
    "JobMetrics",
    "JobState",
    "Lease",
    "Oversight",
    "RestartType",
    "Strategy",
    "Tier",
]

ClientId = Annotated[str, Field(min_length=1, max_length=128)]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Tier = Literal["contracted", "marketplace"]
Oversight = Literal["autonomous_escalation", "spot_check", "supervised"]
RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
AgentStatus = Literal["idle", "busy", "stopped"]
GroupStatus = Literal["active", "terminated"]
JobState = Literal[
    "pending", "running", "waiting_approval", "checkpointed", "completed", "failed", "cancelled"
]
FailureKind = Literal["crash", "timeout", "resource_exhaustion", "invalid_output"]
RecoveryAction = Literal[
    "restart",
    "retry_with_backoff",
    "fallback_agent",
    "retry_with_feedback",
    "human_escalation",
    "fail",
]
ErrorKind = Literal[
    "crash",
    "timeout",
    "resource_exhaustion",
    "invalid_output",
    "human_rejection",
    "exited_without_result",
    "restart_intensity_exceeded",
    "agent_stopped",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Client(_Record):
    client_id: ClientId
    tier: Tier
    balance: float = Field(ge=0)
    reserved: float = Field(0.0, ge=0)
    avruntime: float = 0.0
    created_at: int


class AgentProfile(_Record):
    """What an agent can do; immutable after registration [paper]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    capabilities: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=256
    )
    task_domain: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=256
    )
    input_schema: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] = Field(default_factory=dict)


class Agent(_Record):
    agent_id: Identifier
    profile: AgentProfile
    cost: float = Field(1.0, gt=0)
    oversight: Oversight = "autonomous_escalation"
    group_id: Identifier = "pool"
    restart: RestartType = "transient"
    shutdown_s: float = Field(30.0, ge=0)
    status: AgentStatus = "idle"
    start_order: int = 0
    restart_count: int = 0
    current_job_id: str | None = None
    shutdown_deadline: int | None = None
    created_at: int = 0


class Group(_Record):
    group_id: Identifier
    strategy: Strategy
    restarts_max: int = Field(5, ge=0, le=1_000)
    period_s: float = Field(60.0, gt=0, le=86_400)
    parent_id: str | None = "root"
    status: GroupStatus = "active"
    restart_log: list[int] = Field(default_factory=list)


class JobError(_Record):
    kind: ErrorKind
    message: str
    needs_human: bool = False


class JobMetrics(_Record):
    steps_completed: int = 0
    steps_cached: int = 0
    total_execution_ms: int = 0
    errors: int = 0


class Lease(_Record):
    lease_id: str
    job_id: str
    agent_id: str
    expires_at: int
    status: Literal["active", "revoked", "expired", "released"]


class Job(_Record):
    job_id: str
    client_id: str
    task: str
    input: Any = None
    required_capabilities: list[str] = Field(default_factory=list)
    task_domain: str | None = None
    agent_id: str | None = None
    cost: float
    oversight: Oversight = "autonomous_escalation"
    retries_max: int = 3
    retry_count: int = 0
    timeout_s: float = 1800.0
    depends_on: list[str] = Field(default_factory=list)
    recovery: dict[str, RecoveryAction] = Field(default_factory=dict)
    state: JobState = "pending"
    seq: int
    level: int = 0
    not_before: int = 0
    charged: bool = False
    lease_id: str | None = None
    lease_expires_at: int | None = None
    assigned_agent_id: str | None = None
    dispatch_count: int = 0
    excluded_agents: list[str] = Field(default_factory=list)
    feedback: list[str] = Field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    approval_artifact: Any = None
    approval_seq: int = 0
    result: Any = None
    error: JobError | None = None
    metrics: JobMetrics = Field(default_factory=JobMetrics)
    idempotency_key: str | None = None
    run_elapsed_ms: int = 0
    run_started_at: int | None = None
    created_at: int
    updated_at: int
