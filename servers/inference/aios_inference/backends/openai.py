"""OpenAI-compatible HTTP backends: llama.cpp's server, vLLM, Ollama's ``/v1``.

Chat streams Server-Sent Events from ``/v1/chat/completions`` with ``stream_options.include_usage``
so the last event carries the token counts; llama.cpp also sends ``timings`` (milliseconds), used
for the durations when present. These servers hold the models they were started with, so
``loaded_models`` is ``/v1/models`` and load/unload/pull are refused as unsupported.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any, Final

import httpx

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
from aios_shared.errors import AiosError, InvalidArgument

__all__ = ["OpenAICompatBackend"]

_DATA_PREFIX: Final = "data:"
# llama.cpp closes idle keep-alive connections after 5 s: drop ours well before that.
_KEEPALIVE_EXPIRY_S: Final = 2.0


class OpenAICompatBackend:
    kind = "openai"

    def __init__(self, config: BackendConfig) -> None:
        self.name = config.name
        self._config = config
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        base = config.url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=base if base.endswith("/v1") else f"{base}/v1",
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(keepalive_expiry=_KEEPALIVE_EXPIRY_S),
        )

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except AiosError:
            raise
        except httpx.TimeoutException as error:
            raise backend_timeout(self.name, self._config.timeout_s) from error
        except httpx.TransportError as error:
            raise backend_unavailable(self.name, type(error).__name__) from error

    async def _check(self, response: httpx.Response, model: str) -> None:
        if response.status_code < 400:
            return
        text = (await response.aread()).decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            error = json.loads(text).get("error", text)
            text = error.get("message", text) if isinstance(error, dict) else str(error)
        if response.status_code == 404:
            raise model_not_found(model, self.name)
        if response.status_code in (429, 503):
            raise overloaded(model, self.name, text)
        if response.status_code in (400, 422):
            raise backend_rejected(self.name, response.status_code, text)
        raise backend_unavailable(self.name, f"HTTP {response.status_code}: {text}")

    def _body(self, call: GenerationCall) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": call.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            **{key: value for key, value in call.options.items() if value is not None},
        }
        if call.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": call.json_schema, "strict": True},
            }
        if call.messages is not None:
            body["messages"] = call.messages
            if call.tools:
                body["tools"] = call.tools
            return "/chat/completions", body
        body["prompt"] = call.prompt or ""
        return "/completions", body

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send, once more if a reused keep-alive connection was closed under us: llama.cpp's
        server sometimes drops a connection right after a streamed answer, and the request
        sent on it is then never read (httpx reports no response at all)."""
        try:
            return await self._client.send(request, stream=True)
        except httpx.RemoteProtocolError:
            return await self._client.send(request, stream=True)

    async def stream(self, call: GenerationCall) -> AsyncGenerator[Chunk, None]:
        path, body = self._body(call)
        started = time.perf_counter()
        finish_reason: str | None = None
        with self._mapped():
            response = await self._send(self._client.build_request("POST", path, json=body))
            try:
                await self._check(response, call.model)
                async for line in response.aiter_lines():
                    if not line.startswith(_DATA_PREFIX):
                        continue
                    data = line[len(_DATA_PREFIX) :].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    for choice in event.get("choices") or []:
                        finish_reason = choice.get("finish_reason") or finish_reason
                        text, calls = _delta(choice)
                        if text or calls:
                            yield Chunk(text=text, tool_calls=calls)
                    if event.get("usage"):
                        usage = _usage(event, (time.perf_counter() - started) * 1000)
                        yield Chunk(text="", done=True, finish_reason=finish_reason, usage=usage)
                        return
            finally:
                await response.aclose()
        yield Chunk(text="", done=True, finish_reason=finish_reason, usage=None)

    async def _request(self, method: str, path: str, model: str, **kwargs: Any) -> Any:
        with self._mapped():
            response = await self._send(self._client.build_request(method, path, **kwargs))
            try:
                await self._check(response, model)
                await response.aread()
            finally:
                await response.aclose()
        return response.json()

    async def embed(self, model: str, inputs: list[str]) -> EmbedOutcome:
        started = time.perf_counter()
        with self._mapped():
            response = await self._client.post(
                "/embeddings", json={"model": model, "input": inputs}
            )
            await self._check(response, model)
        document = response.json()
        rows = sorted(document.get("data") or [], key=lambda row: row.get("index", 0))
        return EmbedOutcome(
            vectors=[[float(value) for value in row["embedding"]] for row in rows],
            prompt_tokens=int((document.get("usage") or {}).get("prompt_tokens") or 0),
            total_ms=(time.perf_counter() - started) * 1000,
        )

    async def list_models(self) -> list[BackendModel]:
        document = await self._request("GET", "/models", "")
        return [
            BackendModel(name=str(item["id"]), size_bytes=_size(item))
            for item in document.get("data") or []
            if item.get("id")
        ]

    async def loaded_models(self) -> list[LoadedModel]:
        return [
            LoadedModel(
                name=item.name, size_bytes=item.size_bytes or 0, vram_bytes=0, expires_at=None
            )
            for item in await self.list_models()
        ]

    def _unsupported(self, action: str) -> InvalidArgument:
        return InvalidArgument(
            f"Backend {self.name!r} (OpenAI-compatible) cannot {action} models.",
            hint="Its models are the ones it was started with; use an Ollama backend for this.",
            details={"reason": "unsupported", "backend": self.name, "action": action},
        )

    async def load(self, model: str, keep_alive: str | float | None) -> None:
        raise self._unsupported("load")

    async def unload(self, model: str) -> None:
        raise self._unsupported("unload")

    async def pull(self, model: str, *, insecure: bool) -> AsyncGenerator[PullEvent, None]:
        raise self._unsupported("pull")
        yield PullEvent(status="")  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:
        await self._client.aclose()


def _delta(choice: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    delta = choice.get("delta") or {}
    text = delta.get("content") or choice.get("text") or ""
    calls = delta.get("tool_calls") or []
    return str(text), [call for call in calls if isinstance(call, dict)]


def _usage(event: dict[str, Any], wall_ms: float) -> BackendUsage:
    usage = event.get("usage") or {}
    timings = event.get("timings") or {}
    prompt_ms = float(timings.get("prompt_ms") or 0.0)
    completion_ms = float(timings.get("predicted_ms") or 0.0)
    return BackendUsage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        total_ms=wall_ms,
        prompt_ms=prompt_ms,
        completion_ms=completion_ms,
    )


def _size(item: dict[str, Any]) -> int | None:
    meta = item.get("meta") or {}
    size = meta.get("size") if isinstance(meta, dict) else None
    return int(size) if isinstance(size, int) else None
