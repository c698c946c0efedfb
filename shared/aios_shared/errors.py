"""Typed errors shared by every AIOS server, and their one mapping to MCP tool results.

    AiosError (code="internal" unless a subclass says otherwise)
    ├── InvalidArgument        invalid_argument       bad input; the caller can fix it
    ├── NotFound               not_found              the named thing does not exist
    ├── Conflict               conflict               state forbids it (version clash, duplicate)
    ├── PermissionDenied       permission_denied      authenticated, but not allowed
    ├── Unauthenticated        unauthenticated        no or bad credentials
    ├── RateLimited            rate_limited           too many calls; retry later
    ├── ResourceExhausted      resource_exhausted     a limit was hit (queue full, sandbox limit)
    ├── ToolFailed             tool_failed            the invoked tool or program itself failed
    ├── SubsystemUnavailable   subsystem_unavailable  a peer server is down or restarting
    ├── InsufficientCredits    insufficient_credits   not enough credits for the operation
    ├── Timeout                timeout                a deadline passed
    └── Internal               internal               a bug; the client sees only an incident id

A server's finer-grained name goes into ``details["reason"]``. Every error reaches the client as a
tool error result (``is_error``) with a readable text and ``structured_content`` of
``{code, message, details}``; tracebacks go to the server log only (DESIGN.md sections 4 and 8).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final, Literal, ParamSpec, TypeVar

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ERROR_CODES",
    "AiosError",
    "Conflict",
    "ErrorCode",
    "ErrorPayload",
    "InsufficientCredits",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ResourceExhausted",
    "SubsystemUnavailable",
    "Timeout",
    "ToolFailed",
    "Unauthenticated",
    "error_from_payload",
    "error_result",
    "internal_error_result",
    "mapped_tool_errors",
]

logger = logging.getLogger(__name__)

ErrorCode = Literal[
    "invalid_argument",
    "not_found",
    "conflict",
    "permission_denied",
    "unauthenticated",
    "rate_limited",
    "resource_exhausted",
    "tool_failed",
    "subsystem_unavailable",
    "insufficient_credits",
    "timeout",
    "internal",
]


class ErrorPayload(BaseModel):
    """The structured content of every AIOS tool error result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: ErrorCode
    message: str = Field(min_length=1)
    details: dict[str, Any] = Field(default_factory=dict)


class AiosError(Exception):
    """Base of all expected, typed failures. ``message`` says what happened with the values
    involved; ``hint`` says what to do next; ``details`` carries machine-readable context."""

    code: ClassVar[ErrorCode] = "internal"

    def __init__(
        self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details: dict[str, Any] = dict(details or {})

    def for_caller(self) -> str:
        """The sentence a person (or model) reads: what happened, then what to do."""
        return f"{self.message} {self.hint}" if self.hint else self.message

    def to_payload(self) -> ErrorPayload:
        return ErrorPayload(code=self.code, message=self.for_caller(), details=self.details)


class InvalidArgument(AiosError):
    code = "invalid_argument"


class NotFound(AiosError):
    code = "not_found"


class Conflict(AiosError):
    code = "conflict"


class PermissionDenied(AiosError):
    code = "permission_denied"


class Unauthenticated(AiosError):
    code = "unauthenticated"


class RateLimited(AiosError):
    code = "rate_limited"


class ResourceExhausted(AiosError):
    code = "resource_exhausted"


class ToolFailed(AiosError):
    code = "tool_failed"


class SubsystemUnavailable(AiosError):
    code = "subsystem_unavailable"


class InsufficientCredits(AiosError):
    code = "insufficient_credits"


class Timeout(AiosError):
    code = "timeout"


class Internal(AiosError):
    code = "internal"


_ERROR_CLASSES: Final[dict[str, type[AiosError]]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        Conflict,
        PermissionDenied,
        Unauthenticated,
        RateLimited,
        ResourceExhausted,
        ToolFailed,
        SubsystemUnavailable,
        InsufficientCredits,
        Timeout,
        Internal,
    )
}
ERROR_CODES: Final[frozenset[str]] = frozenset(_ERROR_CLASSES)


def error_result(error: AiosError) -> types.CallToolResult:
    """The one mapping from a typed error to an MCP tool error result."""
    payload = error.to_payload()
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"{payload.code}: {payload.message}")],
        structured_content=payload.model_dump(mode="json"),
        is_error=True,
    )


def internal_error_result(tool: str) -> types.CallToolResult:
    """Log the in-flight exception with an incident id; give the client only that id."""
    incident = secrets.token_hex(4)
    logger.exception("tool.failed", extra={"tool": tool, "incident": incident})
    return error_result(
        Internal(
            f"Internal error in {tool} (incident {incident}).",
            hint="The server log has the details; report the incident id.",
            details={"incident": incident},
        )
    )


def error_from_payload(payload: dict[str, Any]) -> AiosError:
    """Rebuild a typed error from a peer's structured error content (used by peer clients)."""
    parsed = ErrorPayload.model_validate(payload)
    return _ERROR_CLASSES[parsed.code](parsed.message, details=parsed.details)


P = ParamSpec("P")
R = TypeVar("R")


def mapped_tool_errors(
    function: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R | types.CallToolResult]]:
    """Decorate an MCP tool function so typed errors become structured error results and any
    other exception becomes an opaque ``internal`` result (the one sanctioned catch-all)."""

    import functools

    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | types.CallToolResult:
        try:
            return await function(*args, **kwargs)
        except AiosError as error:
            return error_result(error)
        except Exception:  # noqa: BLE001 - the MCP boundary: log it, hide it from the client
            return internal_error_result(function.__name__)

    return wrapper
