"""The model runtime: routing, admission, fallback, metering. Knows nothing of MCP.

A call names a model; the registry (or, for an unregistered name, the default backend) says
where it runs. The call takes a slot of that model's gate, streams from the backend, relays each
text chunk to ``on_text``, and appends one usage row before it returns. On overload, timeout,
404 or a backend that dies (even mid-stream) it moves on to the model's fallbacks in order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import jsonschema
from pydantic import ValidationError

from aios_inference.backends import Backend, build_backend
from aios_inference.backends.base import BackendUsage, EmbedOutcome, GenerationCall
from aios_inference.config import InferenceSettings, ModelConfig
from aios_inference.errors import (
    FALLBACK_REASONS,
    backend_timeout,
    reason_of,
    structured_output_invalid,
)
from aios_inference.gate import ModelGate
from aios_inference.metering import Caller, record_of, usage_of
from aios_inference.models import (
    Attempt,
    ChatMessage,
    ChatResult,
    EmbedResult,
    GenerationOptions,
)
from aios_inference.residency import PIN_KEEP_ALIVE, Residency
from aios_inference.store import UsageStore
from aios_shared.errors import AiosError, InvalidArgument, RateLimited, ResourceExhausted

__all__ = ["Caller", "InferenceService", "Request"]

logger = logging.getLogger(__name__)

OnText = Callable[[str], Awaitable[None]]
_BYTES_PER_TOKEN_ESTIMATE: Final = 4
_UNREGISTERED_GATES_MAX: Final = 1024
_BACKPRESSURE: Final = frozenset({"queue_full", "queue_wait_exceeded", "caller_concurrency"})


@dataclass(frozen=True)
class Request:
    """A chat (``messages``) or completion (``prompt``) request as the service sees it."""

    model: str
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    json_schema: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    fallbacks: list[str] = field(default_factory=list)


@dataclass
class _Stream:
    texts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: BackendUsage | None = None
    first_token_ms: float | None = None


class InferenceService:
    """Transport-free domain logic; one per server process."""

    def __init__(
        self, settings: InferenceSettings, store: UsageStore, backends: dict[str, Backend]
    ) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.store = store
        self.backends = backends
        self.configs = {config.name: config for config in settings.all_backends}
        self.registry = {model.name: model for model in settings.models}
        self._gates: dict[str, ModelGate] = {}
        self._caller_in_flight: dict[str, int] = {}
        self.residency = Residency(backends, self.configs, store, self.in_flight)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: InferenceSettings) -> AsyncIterator[InferenceService]:
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(UsageStore.open(settings.database_path))
            backends: dict[str, Backend] = {}
            for config in settings.all_backends:
                backend = build_backend(config)
                stack.push_async_callback(backend.aclose)
                backends[config.name] = backend
            service = cls(settings, store, backends)
            await service.residency.start()
            yield service

    # -- routing ---------------------------------------------------------------------------

    def entry(self, name: str) -> ModelConfig:
        """The registry entry; else ``backend/model`` on that backend; else the first
        (default) backend's defaults for the bare name."""
        registered = self.registry.get(name)
        if registered is not None:
            return registered
        if not self.configs:
            raise InvalidArgument("No backend is configured.", details={"reason": "no_backend"})
        prefix, _, rest = name.partition("/")
        if rest and prefix in self.configs:
            return ModelConfig(name=name, backend=prefix, backend_model=rest)
        return ModelConfig(name=name, backend=self.default_backend)

    @property
    def default_backend(self) -> str:
        return next(iter(self.configs))

    def gate(self, entry: ModelConfig) -> ModelGate:
        gate = self._gates.get(entry.name)
        if gate is None:
            if entry.name not in self.registry and len(self._gates) >= _UNREGISTERED_GATES_MAX:
                raise ResourceExhausted(
                    f"Too many distinct model names in use ({_UNREGISTERED_GATES_MAX}).",
                    details={"reason": "too_many_models"},
                )
            gate = ModelGate(entry.name, entry.concurrency_max, entry.queue_depth_max)
            self._gates[entry.name] = gate
        return gate

    def gates_for(self, backend: str, model: str) -> list[ModelGate]:
        """The gates of every public name that runs ``model`` on ``backend``."""
        return [
            gate
            for name, gate in self._gates.items()
            if (entry := self.entry(name)).backend == backend and entry.target == model
        ]

    def in_flight(self, backend: str, model: str) -> int:
        return sum(gate.in_flight + gate.queued for gate in self.gates_for(backend, model))

    def chain(self, model: str, extra: list[str]) -> list[ModelConfig]:
        names = [model, *extra, *self.entry(model).fallbacks]
        return [self.entry(name) for name in dict.fromkeys(names)]

    # -- validation ------------------------------------------------------------------------

    def _validated_options(self, options: dict[str, Any], entry: ModelConfig) -> dict[str, Any]:
        try:
            parsed = GenerationOptions.model_validate(options)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
                for item in error.errors()
            )
            raise InvalidArgument(
                f"Invalid options: {problems}.",
                hint="Allowed: max_tokens, temperature, top_p, top_k, seed, stop.",
                details={"reason": "invalid_options"},
            ) from error
        tokens_max = min(self.limits.completion_tokens_max, entry.context_tokens)
        if parsed.max_tokens is not None and parsed.max_tokens > tokens_max:
            raise InvalidArgument(
                f"max_tokens={parsed.max_tokens} exceeds the limit {tokens_max} "
                f"for {entry.name!r}.",
                details={"reason": "invalid_options", "max_tokens_limit": tokens_max},
            )
        return parsed.model_dump(exclude_none=True)

    def _validate_request(self, request: Request, entry: ModelConfig) -> dict[str, Any]:
        texts = [message.content for message in request.messages or []]
        if request.prompt is not None:
            texts.append(request.prompt)
        if (
            request.messages is not None
            and not 0 < len(request.messages) <= self.limits.messages_max
        ):
            raise InvalidArgument(
                f"A chat needs 1 to {self.limits.messages_max} messages, "
                f"got {len(request.messages)}.",
                details={"reason": "invalid_messages"},
            )
        characters = sum(len(text) for text in texts)
        estimate = sum(len(text.encode()) for text in texts) // _BYTES_PER_TOKEN_ESTIMATE
        if characters > self.limits.prompt_chars_max or estimate > entry.context_tokens:
            raise InvalidArgument(
                f"The prompt is too large for {entry.name!r}: {characters} characters, about "
                f"{estimate} tokens; the context holds {entry.context_tokens} tokens and the "
                f"limit is {self.limits.prompt_chars_max} characters.",
                hint="Shorten the prompt or use a model with a larger context.",
                details={"reason": "prompt_too_large", "estimated_tokens": estimate},
            )
        if request.json_schema is not None:
            try:
                jsonschema.validators.validator_for(request.json_schema).check_schema(
                    request.json_schema
                )
            except jsonschema.SchemaError as error:
                raise InvalidArgument(
                    f"json_schema is not a valid JSON Schema: {error.message}",
                    details={"reason": "invalid_schema"},
                ) from error
        return self._validated_options(request.options, entry)

    # -- generation ------------------------------------------------------------------------

    async def generate(
        self, request: Request, caller: Caller, on_text: OnText | None = None
    ) -> ChatResult:
        """Run a chat or completion through the fallback chain.

        Raises:
            InvalidArgument: bad input (nothing was sent or recorded).
            NotFound, ResourceExhausted, RateLimited, SubsystemUnavailable, Timeout: the last
                model of the chain failed so; ``details.attempts`` lists every try.
        """
        chain = self.chain(request.model, request.fallbacks)
        options = self._validate_request(request, chain[0])
        request_id = uuid.uuid4().hex
        attempts: list[Attempt] = []
        async with self._caller_slot(caller):
            for position, entry in enumerate(chain):
                try:
                    stream = await self._attempt(entry, request, options, caller, on_text)
                except AiosError as error:
                    reason = reason_of(error)
                    attempts.append(
                        Attempt(model=entry.name, backend=entry.backend, outcome=reason)
                    )
                    if reason not in _BACKPRESSURE:
                        await self._record_failure(request_id, entry, caller, reason)
                    if reason not in FALLBACK_REASONS or position == len(chain) - 1:
                        error.details["attempts"] = [item.model_dump() for item in attempts]
                        raise
                    logger.info("model.fallback", extra={"model": entry.name, "reason": reason})
                    continue
                attempts.append(Attempt(model=entry.name, backend=entry.backend, outcome="ok"))
                return await self._finish(request_id, request, entry, caller, stream, attempts)
        raise AssertionError("the chain is never empty")

    @asynccontextmanager
    async def _caller_slot(self, caller: Caller) -> AsyncIterator[None]:
        open_now = self._caller_in_flight.get(caller.caller, 0)
        if open_now >= self.limits.caller_in_flight_max:
            raise RateLimited(
                f"Caller {caller.caller!r} has {open_now} requests open "
                f"(caller_in_flight_max={self.limits.caller_in_flight_max}).",
                hint="Wait for one to finish.",
                details={"reason": "caller_concurrency"},
            )
        self._caller_in_flight[caller.caller] = open_now + 1
        try:
            yield
        finally:
            remaining = self._caller_in_flight[caller.caller] - 1
            if remaining:
                self._caller_in_flight[caller.caller] = remaining
            else:
                del self._caller_in_flight[caller.caller]

    async def _attempt(
        self,
        entry: ModelConfig,
        request: Request,
        options: dict[str, Any],
        caller: Caller,
        on_text: OnText | None,
    ) -> _Stream:
        backend = self.backends[entry.backend]
        config = self.configs[entry.backend]
        call = GenerationCall(
            model=entry.target,
            messages=[message.model_dump(exclude_none=True) for message in request.messages]
            if request.messages is not None
            else None,
            prompt=request.prompt,
            options=options,
            json_schema=request.json_schema,
            tools=request.tools,
            keep_alive=PIN_KEEP_ALIVE
            if self.residency.is_pinned(entry.backend, entry.target)
            else None,
        )
        async with self.gate(entry).slot(caller.priority, self.limits.queue_wait_s):
            await self.residency.admit(entry.backend, entry.target, entry.size_bytes)
            self.residency.touch(entry.backend, entry.target)
            stream = _Stream()
            started = time.perf_counter()
            try:
                # aclosing: a cancellation while relaying a chunk still closes the backend
                # stream at once, which is what stops the generation on the backend.
                with anyio.fail_after(config.timeout_s):
                    async with contextlib.aclosing(backend.stream(call)) as chunks:
                        async for chunk in chunks:
                            if chunk.text:
                                if stream.first_token_ms is None:
                                    stream.first_token_ms = (time.perf_counter() - started) * 1000
                                stream.texts.append(chunk.text)
                                if on_text is not None:
                                    await on_text(chunk.text)
                            stream.tool_calls.extend(chunk.tool_calls)
                            if chunk.done:
                                stream.finish_reason = chunk.finish_reason
                                stream.usage = chunk.usage
            except TimeoutError as error:
                raise backend_timeout(entry.backend, config.timeout_s) from error
            except anyio.get_cancelled_exc_class():
                with anyio.move_on_after(5, shield=True):
                    await self._record_cancelled(entry, caller, stream, started)
                raise
            finally:
                self.residency.touch(entry.backend, entry.target)
            if stream.usage is None:
                stream.usage = BackendUsage(
                    prompt_tokens=0,
                    completion_tokens=len(stream.texts),
                    total_ms=(time.perf_counter() - started) * 1000,
                )
            return stream

    async def _finish(
        self,
        request_id: str,
        request: Request,
        entry: ModelConfig,
        caller: Caller,
        stream: _Stream,
        attempts: list[Attempt],
    ) -> ChatResult:
        assert stream.usage is not None, "set by _attempt"
        text = "".join(stream.texts)
        usage = usage_of(entry, stream.usage, stream.first_token_ms)
        outcome = "ok"
        parsed: Any = None
        problem: str | None = None
        if request.json_schema is not None:
            try:
                parsed = json.loads(text)
                jsonschema.validate(parsed, request.json_schema)
            except (json.JSONDecodeError, jsonschema.ValidationError) as error:
                problem = str(getattr(error, "message", error))
                outcome = "invalid_structured_output"
        await self.store.append(record_of(request_id, "chat", entry, caller, usage, outcome))
        if problem is not None:
            raise structured_output_invalid(entry.name, problem)
        return ChatResult(
            request_id=request_id,
            model=entry.name,
            backend=entry.backend,
            text=text,
            finish_reason=stream.finish_reason,
            tool_calls=stream.tool_calls,
            parsed=parsed,
            usage=usage,
            attempts=attempts,
        )

    # -- embeddings ------------------------------------------------------------------------

    async def embed(self, model: str, inputs: list[str], caller: Caller) -> EmbedResult:
        """Embed ``inputs`` (one vector each, in order).

        Raises:
            InvalidArgument: no inputs, too many, or one too long for the model.
        """
        entry = self.entry(model)
        if not 0 < len(inputs) <= self.limits.embed_inputs_max:
            raise InvalidArgument(
                f"Embed takes 1 to {self.limits.embed_inputs_max} inputs, got {len(inputs)}.",
                details={"reason": "invalid_inputs"},
            )
        for text in inputs:
            self._validate_request(Request(model=model, prompt=text), entry)
        request_id = uuid.uuid4().hex
        backend = self.backends[entry.backend]
        async with (
            self._caller_slot(caller),
            self.gate(entry).slot(caller.priority, self.limits.queue_wait_s),
        ):
            await self.residency.admit(entry.backend, entry.target, entry.size_bytes)
            self.residency.touch(entry.backend, entry.target)
            try:
                outcome: EmbedOutcome = await backend.embed(entry.target, inputs)
            except AiosError as error:
                await self._record_failure(request_id, entry, caller, reason_of(error))
                raise
        usage = usage_of(
            entry,
            BackendUsage(
                prompt_tokens=outcome.prompt_tokens, completion_tokens=0, total_ms=outcome.total_ms
            ),
            None,
        )
        await self.store.append(record_of(request_id, "embed", entry, caller, usage, "ok"))
        return EmbedResult(
            request_id=request_id,
            model=entry.name,
            backend=entry.backend,
            embeddings=outcome.vectors,
            usage=usage,
        )

    async def _record_failure(
        self, request_id: str, entry: ModelConfig, caller: Caller, reason: str
    ) -> None:
        usage = usage_of(entry, BackendUsage(prompt_tokens=0, completion_tokens=0), None)
        await self.store.append(record_of(request_id, "chat", entry, caller, usage, reason))

    async def _record_cancelled(
        self, entry: ModelConfig, caller: Caller, stream: _Stream, started: float
    ) -> None:
        """A cancelled stream is billed for what was relayed: one token per chunk."""
        counts = BackendUsage(
            prompt_tokens=0,
            completion_tokens=len(stream.texts),
            total_ms=(time.perf_counter() - started) * 1000,
        )
        usage = usage_of(entry, counts, stream.first_token_ms)
        record = record_of(uuid.uuid4().hex, "chat", entry, caller, usage, "cancelled")
        await self.store.append(record)
