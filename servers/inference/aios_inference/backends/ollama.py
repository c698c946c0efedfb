"""Ollama through the official ``ollama`` client, tolerant of fields an older server lacks.

Ollama 0.5.x has no ``context_length`` in ``/api/ps`` and no ``think``; every field read here is
optional in the client's models and read with a default. Loads and unloads are Ollama's own
mechanism: an empty generate with ``keep_alive`` (0 unloads, a negative value pins).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from typing import Any, Final

import anyio
import httpx
import ollama

from aios_inference.backends.base import (
    BackendModel,
    BackendUsage,
    Chunk,
    EmbedOutcome,
    GenerationCall,
    LoadedModel,
    PullEvent,
)
from aios_inference.config import BackendConfig
from aios_inference.errors import (
    backend_rejected,
    backend_timeout,
    backend_unavailable,
    model_not_found,
    overloaded,
)
from aios_shared.errors import AiosError, ToolFailed

__all__ = ["OllamaBackend", "ollama_options"]

_NS_PER_MS: Final = 1_000_000
_UNLOAD_POLLS_MAX: Final = 100
# The client reports an error object inside a stream (a failed pull) with status -1.
_IN_STREAM_ERROR: Final = -1
_UNLOAD_POLL_S: Final = 0.05
_OPTION_NAMES: Final = {
    "max_tokens": "num_predict",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "stop": "stop",
}


def ollama_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {_OPTION_NAMES[key]: value for key, value in options.items() if value is not None}


def _ms(nanoseconds: int | None) -> float:
    return (nanoseconds or 0) / _NS_PER_MS


class OllamaBackend:
    """One Ollama host."""

    kind = "ollama"

    def __init__(self, config: BackendConfig) -> None:
        self.name = config.name
        self._config = config
        headers = (
            {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}
            if config.api_key
            else None
        )
        self._client = ollama.AsyncClient(
            host=config.url,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            headers=headers,
        )

    @contextlib.contextmanager
    def _mapped(self, model: str) -> Iterator[None]:
        """The one translation of client and transport failures into typed errors."""
        try:
            yield
        except AiosError:
            raise
        except ollama.ResponseError as error:
            raise self._response_error(model, error) from error
        except ConnectionError as error:  # the client's own name for httpx.ConnectError
            raise backend_unavailable(self.name, "connection refused") from error
        except httpx.TimeoutException as error:
            raise backend_timeout(self.name, self._config.timeout_s) from error
        except httpx.TransportError as error:
            raise backend_unavailable(self.name, type(error).__name__) from error

    def _response_error(self, model: str, error: ollama.ResponseError) -> AiosError:
        text = str(error.error)
        if error.status_code == 404 or ("not found" in text and "model" in text):
            return model_not_found(model, self.name)
        if error.status_code in (429, 503):
            return overloaded(model, self.name, text)
        if error.status_code in (400, 422):
            return backend_rejected(self.name, error.status_code, text)
        if error.status_code == _IN_STREAM_ERROR:
            return ToolFailed(
                f"Backend {self.name!r} failed: {text[:300]}",
                details={"reason": "backend_failed", "backend": self.name},
            )
        return backend_unavailable(self.name, f"HTTP {error.status_code}: {text}")

    async def stream(self, call: GenerationCall) -> AsyncGenerator[Chunk, None]:
        options = ollama_options(call.options)
        with self._mapped(call.model):
            if call.messages is not None:
                parts: AsyncIterator[Any] = await self._client.chat(
                    model=call.model,
                    messages=call.messages,
                    tools=call.tools,
                    stream=True,
                    format=call.json_schema,
                    options=options,
                    keep_alive=call.keep_alive,
                )
            else:
                parts = await self._client.generate(
                    model=call.model,
                    prompt=call.prompt or "",
                    stream=True,
                    format=call.json_schema,
                    options=options,
                    keep_alive=call.keep_alive,
                )
            async with contextlib.aclosing(parts):  # type: ignore[type-var]  # an async generator
                async for part in parts:
                    yield _chunk(part)

    async def embed(self, model: str, inputs: list[str]) -> EmbedOutcome:
        with self._mapped(model):
            response = await self._client.embed(model=model, input=inputs)
            vectors = [list(vector) for vector in response.embeddings]
            # Ollama 0.5.x on CPU with OLLAMA_NUM_PARALLEL > 1 sometimes returns all-zero
            # vectors for members of a batch; embedding such an input alone gives the real one.
            for index, vector in enumerate(vectors):
                if len(inputs) > 1 and not any(vector):
                    single = await self._client.embed(model=model, input=inputs[index])
                    vectors[index] = list(single.embeddings[0])
        return EmbedOutcome(
            vectors=vectors,
            prompt_tokens=response.prompt_eval_count or 0,
            total_ms=_ms(response.total_duration),
        )

    async def list_models(self) -> list[BackendModel]:
        with self._mapped(""):
            response = await self._client.list()
        return [
            BackendModel(name=_short(item.model or ""), size_bytes=_int(item.size))
            for item in response.models
            if item.model
        ]

    async def loaded_models(self) -> list[LoadedModel]:
        with self._mapped(""):
            response = await self._client.ps()
        return [
            LoadedModel(
                name=_short(item.model or item.name or ""),
                size_bytes=_int(item.size) or 0,
                vram_bytes=_int(item.size_vram) or 0,
                expires_at=item.expires_at.isoformat() if item.expires_at else None,
            )
            for item in response.models
        ]

    async def load(self, model: str, keep_alive: str | float | None) -> None:
        with self._mapped(model):
            await self._client.generate(
                model=model, prompt="", keep_alive="5m" if keep_alive is None else keep_alive
            )

    async def unload(self, model: str) -> None:
        with self._mapped(model):
            await self._client.generate(model=model, prompt="", keep_alive=0)
        # Ollama answers before its runner has stopped; wait (bounded) until ps agrees.
        for _ in range(_UNLOAD_POLLS_MAX):
            if all(item.name != model for item in await self.loaded_models()):
                return
            await anyio.sleep(_UNLOAD_POLL_S)

    async def pull(self, model: str, *, insecure: bool) -> AsyncGenerator[PullEvent, None]:
        with self._mapped(model):
            events: AsyncIterator[Any] = await self._client.pull(
                model, insecure=insecure, stream=True
            )
            async with contextlib.aclosing(events):  # type: ignore[type-var]  # async generator
                async for event in events:
                    yield PullEvent(
                        status=event.status or "", completed=event.completed, total=event.total
                    )

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]  # unannotated in ollama


def _chunk(part: Any) -> Chunk:
    message = getattr(part, "message", None)
    text = (message.content or "") if message is not None else (part.response or "")
    calls = [call.model_dump() for call in (message.tool_calls or [])] if message else []
    if not part.done:
        return Chunk(text=text, tool_calls=calls)
    load_ms = _ms(part.load_duration)
    return Chunk(
        text=text,
        done=True,
        finish_reason=part.done_reason,
        tool_calls=calls,
        usage=BackendUsage(
            prompt_tokens=part.prompt_eval_count or 0,
            completion_tokens=part.eval_count or 0,
            total_ms=_ms(part.total_duration),
            load_ms=load_ms,
            prompt_ms=_ms(part.prompt_eval_duration),
            completion_ms=_ms(part.eval_duration),
        ),
    )


def _short(name: str) -> str:
    """Ollama reports ``gemma3-270m:latest``; callers say ``gemma3-270m``."""
    return name.removesuffix(":latest")


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int) else None
