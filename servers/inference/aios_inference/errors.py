"""The inference server's typed errors; each is a shared kind with a finer ``details.reason``.

model_not_found       NotFound              the backend (or registry) has no such model
prompt_too_large      InvalidArgument       over the context size or the prompt limit
invalid_options       InvalidArgument       an option the backend or AIOS refuses
backend_rejected      InvalidArgument       the backend answered 400 for another reason
unsupported           InvalidArgument       the backend kind cannot do this (load on llama.cpp)
overloaded            ResourceExhausted     the backend answered 503/429 (its queue is full)
queue_full            ResourceExhausted     this server's per-model queue is at its bound
does_not_fit          ResourceExhausted     a load would exceed the host's memory
queue_wait_exceeded   RateLimited           no slot became free within queue_wait_s
caller_concurrency    RateLimited           the caller has too many requests open
backend_unavailable   SubsystemUnavailable  connection refused, reset, or died mid-stream
backend_timeout       Timeout               the backend did not answer in time
invalid_structured_output  ToolFailed       the model's JSON does not match the schema
"""

from __future__ import annotations

from typing import Any

from aios_shared.errors import (
    AiosError,
    InvalidArgument,
    NotFound,
    RateLimited,
    ResourceExhausted,
    SubsystemUnavailable,
    Timeout,
    ToolFailed,
)

__all__ = [
    "FALLBACK_REASONS",
    "backend_rejected",
    "backend_timeout",
    "backend_unavailable",
    "model_not_found",
    "overloaded",
    "reason_of",
]

# Failures after which the next model of the chain is tried (issue 6: overload, timeout, 404).
FALLBACK_REASONS = frozenset(
    {"model_not_found", "overloaded", "queue_full", "backend_unavailable", "backend_timeout"}
)


def reason_of(error: AiosError) -> str:
    reason = error.details.get("reason")
    return reason if isinstance(reason, str) else error.code


def model_not_found(model: str, backend: str) -> NotFound:
    return NotFound(
        f"Model {model!r} is not on backend {backend!r}.",
        hint="Call list_models for what is available, or ask an operator to pull it.",
        details={"reason": "model_not_found", "model": model, "backend": backend},
    )


def overloaded(model: str, backend: str, text: str) -> ResourceExhausted:
    return ResourceExhausted(
        f"Backend {backend!r} is overloaded for {model!r}: {text[:200]}",
        hint="Retry later or use another model.",
        details={"reason": "overloaded", "model": model, "backend": backend},
    )


def backend_unavailable(backend: str, text: str) -> SubsystemUnavailable:
    return SubsystemUnavailable(
        f"Backend {backend!r} is unreachable or dropped the request: {text[:200]}",
        hint="Retry; an operator can check that the backend runs.",
        details={"reason": "backend_unavailable", "backend": backend},
    )


def backend_timeout(backend: str, timeout_s: float) -> Timeout:
    return Timeout(
        f"Backend {backend!r} did not answer within {timeout_s} s.",
        hint="Retry with fewer tokens or another model.",
        details={"reason": "backend_timeout", "backend": backend, "timeout_s": timeout_s},
    )


def backend_rejected(backend: str, status: int, text: str) -> InvalidArgument:
    details: dict[str, Any] = {"reason": "backend_rejected", "backend": backend, "status": status}
    lowered = text.lower()
    if "context" in lowered and ("exceed" in lowered or "too long" in lowered):
        details["reason"] = "prompt_too_large"
    return InvalidArgument(
        f"Backend {backend!r} refused the request: {text[:300]}", details=details
    )


def structured_output_invalid(model: str, problem: str) -> ToolFailed:
    return ToolFailed(
        f"Model {model!r} returned output that does not match the schema: {problem[:300]}",
        hint="Retry, simplify the schema, or use a stronger model.",
        details={"reason": "invalid_structured_output", "model": model},
    )


def queue_full(model: str, depth: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"The queue for {model!r} is full (queue_depth_max={depth}).",
        hint="Retry later or use another model.",
        details={"reason": "queue_full", "model": model, "queue_depth_max": depth},
    )


def queue_wait_exceeded(model: str, wait_s: float) -> RateLimited:
    return RateLimited(
        f"No slot for {model!r} became free within queue_wait_s={wait_s}.",
        hint="Retry later.",
        details={"reason": "queue_wait_exceeded", "model": model, "queue_wait_s": wait_s},
    )
