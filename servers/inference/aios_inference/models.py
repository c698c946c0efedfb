"""Pydantic models that cross the MCP boundary: requests' parts, results, usage, inventory."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Attempt",
    "ChatMessage",
    "ChatResult",
    "DeviceView",
    "EmbedResult",
    "GenerationOptions",
    "InventoryView",
    "LoadedModelView",
    "ModelList",
    "ModelView",
    "OperationResult",
    "PullResult",
    "Tier",
    "Usage",
    "UsagePage",
    "UsageRecord",
    "UsageTotals",
]

Tier = Literal["operator", "contracted", "marketplace"]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChatMessage(_Frozen):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=1_000_000)
    tool_calls: list[dict[str, Any]] | None = None


class GenerationOptions(_Frozen):
    """The sampling options both backend kinds understand."""

    max_tokens: int | None = Field(None, ge=1, description="Completion tokens at most.")
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1, le=1000)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, max_length=8
    )


class Usage(_Frozen):
    """What one call consumed; durations in milliseconds, cost in credits."""

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_ms: float = Field(ge=0)
    load_ms: float = Field(ge=0)
    prompt_ms: float = Field(ge=0)
    completion_ms: float = Field(ge=0)
    first_token_ms: float | None = Field(None, ge=0)
    cost: float = Field(ge=0)
    model: str
    backend: str


class Attempt(_Frozen):
    model: str
    backend: str
    outcome: str = Field(description="ok, or the error reason that moved on to the next model.")


class ChatResult(_Frozen):
    request_id: str
    model: str
    backend: str
    text: str
    finish_reason: str | None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    parsed: Any = Field(None, description="The JSON value when a schema was given.")
    usage: Usage
    attempts: list[Attempt]


class EmbedResult(_Frozen):
    request_id: str
    model: str
    backend: str
    embeddings: list[list[float]]
    usage: Usage


class ModelView(_Frozen):
    name: str
    backend: str
    backend_model: str
    registered: bool
    context_tokens: int | None
    price_prompt_per_1k: float
    price_completion_per_1k: float
    placement: str
    size_bytes: int | None
    concurrency_max: int
    queue_depth_max: int
    fallbacks: list[str]
    available: bool = Field(description="The backend listed it just now.")


class ModelList(_Frozen):
    models: list[ModelView]
    unreachable_backends: list[str]


class LoadedModelView(_Frozen):
    model: str
    backend: str
    size_bytes: int
    vram_bytes: int
    expires_at: str | None
    pinned: bool
    in_flight: int
    queued: int


class DeviceView(_Frozen):
    name: str
    kind: Literal["gpu", "cpu"]
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    utilization_percent: float | None
    source: Literal["nvml", "backend", "config"]


class InventoryView(_Frozen):
    devices: list[DeviceView]
    loaded: list[LoadedModelView]
    unreachable_backends: list[str]


class OperationResult(_Frozen):
    model: str
    backend: str
    action: str
    loaded: list[LoadedModelView]


class PullResult(_Frozen):
    model: str
    backend: str
    status: str
    events: int


class UsageRecord(_Frozen):
    request_id: str
    recorded_at: str
    caller: str
    agent_id: str | None
    job_id: str | None
    operation: str
    model: str
    backend: str
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    total_ms: float
    load_ms: float
    prompt_ms: float
    completion_ms: float
    cost: float


class UsageTotals(_Frozen):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    total_ms: float


class UsagePage(_Frozen):
    records: list[UsageRecord]
    totals: UsageTotals
    next_cursor: int | None
