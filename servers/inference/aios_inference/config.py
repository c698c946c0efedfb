"""Settings of the inference server: backend hosts, the model registry and the limits.

One setting points AIOS at an Ollama elsewhere: ``AIOS_OLLAMA_URL=http://gpu-box:11434``. More
hosts go in the config file (``[[backends]]``) or ``AIOS_BACKENDS`` as JSON; the registry in
``[[models]]``. A model that is not in the registry is still served by the default backend with
the default limits, so a fresh install sees every model its Ollama has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from aios_shared.config import ServerSettings

__all__ = [
    "BackendConfig",
    "InferenceLimits",
    "InferenceSettings",
    "ModelConfig",
]

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/@-]+$")]


class BackendConfig(BaseModel):
    """One backend host."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    kind: Literal["ollama", "openai"] = Field(
        "ollama", description="ollama: the Ollama API; openai: llama.cpp, vLLM, Ollama's /v1."
    )
    url: str = Field(min_length=1, max_length=2048)
    api_key: SecretStr | None = None
    memory_bytes: int | None = Field(
        None, gt=0, description="Memory models may occupy on this host; none: NVML or no limit."
    )
    timeout_s: float = Field(120.0, gt=0, description="Whole request, including generation.")
    connect_timeout_s: float = Field(5.0, gt=0)


class ModelConfig(BaseModel):
    """One registry entry: where a model runs, what it may cost, how it is scheduled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name = Field(description="The name callers use.")
    backend: Name = Field(description="The backend that serves it.")
    backend_model: Name | None = Field(None, description="Its name there; default: name.")
    context_tokens: int = Field(2048, gt=0, le=10_000_000)
    price_prompt_per_1k: float = Field(0.0, ge=0, description="Credits per 1000 prompt tokens.")
    price_completion_per_1k: float = Field(0.0, ge=0)
    placement: Literal["gpu", "cpu", "auto"] = "auto"
    size_bytes: int | None = Field(None, gt=0, description="Resident size; default: reported.")
    concurrency_max: int = Field(2, gt=0, le=1024, description="Requests running at once.")
    queue_depth_max: int = Field(
        16, ge=0, le=100_000, description="Waiting requests; more: refused."
    )
    fallbacks: list[Name] = Field(default_factory=list, max_length=8)
    embeddings: bool = True

    @property
    def target(self) -> str:
        return self.backend_model or self.name


class InferenceLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_chars_max: int = Field(400_000, gt=0, description="Characters over all messages.")
    messages_max: int = Field(512, gt=0)
    completion_tokens_max: int = Field(8192, gt=0)
    embed_inputs_max: int = Field(256, gt=0)
    queue_wait_s: float = Field(60.0, gt=0, description="Longest wait for a slot; then refused.")
    caller_in_flight_max: int = Field(64, gt=0, description="Requests one caller may have open.")
    usage_rows_max: int = Field(500, gt=0, description="Page size cap of usage queries.")
    idle_check_s: float = Field(10.0, gt=0, description="How often idle models are looked at.")
    pull_timeout_s: float = Field(3600.0, gt=0)


class InferenceSettings(ServerSettings):
    """Settings of ``aios-inference`` (defaults < file < ``AIOS_*`` < flags)."""

    ollama_url: str = Field(
        "http://127.0.0.1:11434", min_length=1, description="The default Ollama backend."
    )
    default_backend: bool = Field(True, description="Add the Ollama at ollama_url as 'ollama'.")
    backends: list[BackendConfig] = Field(default_factory=list, max_length=64)
    models: list[ModelConfig] = Field(default_factory=list, max_length=4096)
    idle_unload_s: float | None = Field(
        None, gt=0, description="Unload unpinned models idle this long; none: the backend decides."
    )
    database: Path | None = Field(None, description="Usage ledger; default: home/inference.db.")
    limits: InferenceLimits = Field(default_factory=InferenceLimits)

    @model_validator(mode="after")
    def _names_resolve(self) -> Self:
        backends = [backend.name for backend in self.all_backends]
        if len(set(backends)) != len(backends):
            raise ValueError(f"backend names must be unique: {backends}")
        models = {model.name for model in self.models}
        if len(models) != len(self.models):
            raise ValueError("model names must be unique")
        for model in self.models:
            if model.backend not in backends:
                raise ValueError(f"model {model.name} names unknown backend {model.backend}")
            for fallback in model.fallbacks:
                if fallback not in models:
                    raise ValueError(f"model {model.name} falls back to unknown {fallback}")
        return self

    @property
    def all_backends(self) -> list[BackendConfig]:
        """The configured backends, with the default Ollama first unless one is named so."""
        named = {backend.name for backend in self.backends}
        if self.default_backend and "ollama" not in named:
            return [
                BackendConfig(name="ollama", kind="ollama", url=self.ollama_url),
                *self.backends,
            ]
        return list(self.backends)

    @property
    def database_path(self) -> Path:
        return self.database or self.home / "inference.db"
