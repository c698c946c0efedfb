"""The one backend interface every model host implements, and the values it exchanges.

Chat and generate are streams of :class:`Chunk`; the last chunk has ``done=True`` and the
backend's own counts in ``usage``. Errors leave a backend only as the typed errors of
``aios_inference.errors`` (404 -> model_not_found, 503/429 -> overloaded, connection lost ->
backend_unavailable, deadline -> backend_timeout, 400 -> backend_rejected).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Backend",
    "BackendModel",
    "BackendUsage",
    "Chunk",
    "EmbedOutcome",
    "GenerationCall",
    "LoadedModel",
    "PullEvent",
]


@dataclass(frozen=True)
class BackendUsage:
    prompt_tokens: int
    completion_tokens: int
    total_ms: float = 0.0
    load_ms: float = 0.0
    prompt_ms: float = 0.0
    completion_ms: float = 0.0


@dataclass(frozen=True)
class Chunk:
    text: str
    done: bool = False
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: BackendUsage | None = None


@dataclass(frozen=True)
class GenerationCall:
    """One chat (``messages``) or raw completion (``prompt``) request, backend-neutral."""

    model: str
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    json_schema: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    keep_alive: str | float | None = None


@dataclass(frozen=True)
class EmbedOutcome:
    vectors: list[list[float]]
    prompt_tokens: int
    total_ms: float


@dataclass(frozen=True)
class BackendModel:
    name: str
    size_bytes: int | None


@dataclass(frozen=True)
class LoadedModel:
    name: str
    size_bytes: int
    vram_bytes: int
    expires_at: str | None


@dataclass(frozen=True)
class PullEvent:
    status: str
    completed: int | None = None
    total: int | None = None


class Backend(Protocol):
    """A model host. Implementations: ``OllamaBackend``, ``OpenAICompatBackend``."""

    name: str
    kind: str

    def stream(self, call: GenerationCall) -> AsyncGenerator[Chunk, None]: ...

    async def embed(self, model: str, inputs: list[str]) -> EmbedOutcome: ...

    async def list_models(self) -> list[BackendModel]: ...

    async def loaded_models(self) -> list[LoadedModel]: ...

    async def load(self, model: str, keep_alive: str | float | None) -> None: ...

    async def unload(self, model: str) -> None: ...

    def pull(self, model: str, *, insecure: bool) -> AsyncGenerator[PullEvent, None]: ...

    async def aclose(self) -> None: ...
