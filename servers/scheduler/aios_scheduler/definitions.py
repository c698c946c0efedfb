"""Declarative agent definitions (YAML or JSON): who the agent is and the pipeline it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; types-PyYAML is not a dev dependency
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aios_scheduler.errors import bad_argument
from aios_scheduler.models import AgentProfile, Identifier, Oversight, RestartType

__all__ = ["AgentDefinition", "StepDefinition", "load_definition"]

StepKind = Literal["echo", "transform", "sleep", "tool", "llm", "memory_write", "memory_read"]


class StepDefinition(BaseModel):
    """One durable step. ``echo`` returns ``value`` (default: the job input); ``transform``
    applies ``op`` (upper, lower, template) to ``source`` (the input or a step id); ``sleep``
    waits ``seconds``; ``tool``/``llm``/``memory_*`` call a peer server's ``tool`` with
    ``arguments`` (strings may reference ``{input}`` and ``{steps.<id>}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
    kind: StepKind
    value: Any = None
    op: Literal["upper", "lower", "template"] | None = None
    source: str | None = None
    template: str | None = None
    seconds: float = Field(0.0, ge=0, le=3600)
    tool: str | None = Field(None, min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)


class AgentDefinition(BaseModel):
    """An agent: identity and profile, scheduling cost, supervision, and its pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: Identifier
    profile: AgentProfile
    cost: float = Field(1.0, gt=0)
    oversight: Oversight = "autonomous_escalation"
    group_id: Identifier = "pool"
    restart: RestartType = "transient"
    shutdown_s: float = Field(30.0, ge=0, le=3600)
    steps: list[StepDefinition] = Field(min_length=1, max_length=256)


def load_definition(path: Path) -> AgentDefinition:
    """Read a ``.yaml``/``.yml`` or ``.json`` agent definition.

    Raises:
        InvalidArgument: unreadable file, bad syntax or a definition that does not validate.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise bad_argument(f"Cannot read agent definition {path}: {error.strerror}.") from error
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise bad_argument(f"Agent definition {path} does not parse: {error}.") from error
    try:
        definition = AgentDefinition.model_validate(document)
    except ValidationError as error:
        raise bad_argument(f"Agent definition {path} is invalid: {error}.") from error
    ids = [step.id for step in definition.steps]
    if len(set(ids)) != len(ids):
        raise bad_argument(f"Agent definition {path} repeats a step id.")
    return definition
