"""Validated arguments of the tools whose inputs need more than the wire types: the server
parses them here so a bad value becomes ``invalid_argument`` with a reason, before any write."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aios_scheduler.errors import bad_argument
from aios_scheduler.models import (
    AgentProfile,
    ClientId,
    FailureKind,
    Identifier,
    Oversight,
    RecoveryAction,
    RestartType,
    Strategy,
    Tier,
)

__all__ = [
    "CreateGroup",
    "DagTask",
    "RegisterAgent",
    "RegisterClient",
    "SubmitJob",
    "parse",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
Capability = Annotated[str, Field(min_length=1, max_length=128)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterClient(_Request):
    client_id: ClientId
    tier: Tier
    credits: float = Field(ge=0, allow_inf_nan=False)


class SubmitJob(_Request):
    client_id: ClientId
    task: str = Field(min_length=1, max_length=4096, pattern=r"\S")
    input: Any = None
    cost: Positive | None = None
    agent_id: Identifier | None = None
    required_capabilities: list[Capability] = Field(default_factory=list, max_length=64)
    task_domain: Capability | None = None
    oversight: Oversight | None = None
    retries_max: int = Field(3, ge=0, le=100)
    timeout_s: float = Field(1800.0, gt=0, le=7 * 86_400, allow_inf_nan=False)
    depends_on: list[str] = Field(default_factory=list, max_length=256)
    recovery: dict[FailureKind, RecoveryAction] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=256)


class DagTask(_Request):
    key: str = Field(min_length=1, max_length=128)
    task: str = Field(min_length=1, max_length=4096, pattern=r"\S")
    input: Any = None
    cost: Positive | None = None
    required_capabilities: list[Capability] = Field(default_factory=list, max_length=64)
    depends_on: list[str] = Field(default_factory=list, max_length=256)


class RegisterAgent(_Request):
    agent_id: Identifier
    profile: AgentProfile
    cost: Positive = 1.0
    oversight: Oversight = "autonomous_escalation"
    group_id: Identifier = "pool"
    restart: RestartType = "transient"
    shutdown_s: float = Field(30.0, ge=0, le=3600, allow_inf_nan=False)


class CreateGroup(_Request):
    group_id: Identifier
    strategy: Strategy
    restarts_max: int = Field(5, ge=0, le=1000)
    period_s: float = Field(60.0, gt=0, le=86_400, allow_inf_nan=False)
    parent_id: Identifier = "root"


def parse(model: type[ModelT], fields: dict[str, Any]) -> ModelT:
    """Validate tool arguments; a bad value is ``invalid_argument`` naming the field."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
            for item in error.errors()
        )
        raise bad_argument(f"Invalid arguments: {problems}.", fields=problems) from error
