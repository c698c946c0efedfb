"""Backend implementations behind one interface (``base.Backend``)."""

from __future__ import annotations

from aios_inference.backends.base import Backend
from aios_inference.backends.ollama import OllamaBackend
from aios_inference.backends.openai import OpenAICompatBackend
from aios_inference.config import BackendConfig

__all__ = ["Backend", "OllamaBackend", "OpenAICompatBackend", "build_backend"]


def build_backend(config: BackendConfig) -> Backend:
    if config.kind == "ollama":
        return OllamaBackend(config)
    return OpenAICompatBackend(config)
