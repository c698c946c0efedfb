"""Structured logs, request metrics and trace ids for every AIOS server.

- Logs are one JSON object per line on stderr (stdout is the stdio protocol channel), with the
  event name as ``event`` and whatever the call site put in ``extra``.
- Metrics are Prometheus counters and histograms in a registry owned by the running server and
  served at ``/metrics`` on HTTP transports (see ``runner``).
- A trace id travels between servers in the MCP request ``_meta`` under ``TRACE_META_KEY``;
  the request middleware binds it to a context variable so every log line of the request has it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = [
    "TRACE_META_KEY",
    "JsonLogFormatter",
    "ServerMetrics",
    "configure_logging",
    "current_trace_id",
    "new_trace_id",
    "trace_id_var",
]

TRACE_META_KEY: Final = "io.aios/trace-id"

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aios_trace_id", default=None
)

_STANDARD_RECORD_FIELDS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def new_trace_id() -> str:
    return uuid.uuid4().hex


def current_trace_id() -> str | None:
    return trace_id_var.get()


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event, the record's extras, trace id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "event": record.getMessage(),
        }
        trace_id = trace_id_var.get()
        if trace_id is not None:
            entry["trace_id"] = trace_id
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _STANDARD_RECORD_FIELDS and not key.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "info") -> None:
    """Send every log record to stderr as JSON. Call once in ``__main__``, before any server is
    built (``MCPServer`` calls ``logging.basicConfig``, which is a no-op once handlers exist)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK and HTTP stack are chatty at INFO (one line per request); keep them at warning.
    for noisy in ("mcp", "httpx", "httpx2", "uvicorn.access", "sse_starlette"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@dataclass
class ServerMetrics:
    """The Prometheus metrics of one server process, in a registry it owns (no global state)."""

    service: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    requests: Counter = field(init=False)
    request_seconds: Histogram = field(init=False)
    tool_errors: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "aios_mcp_requests",
            "MCP requests handled, by method and outcome.",
            ["service", "method", "outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "aios_mcp_request_seconds",
            "Time to handle an MCP request, by method.",
            ["service", "method"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
        )
        self.tool_errors = Counter(
            "aios_tool_errors",
            "Tool calls that returned an error result, by tool and error code.",
            ["service", "tool", "code"],
            registry=self.registry,
        )

    def observe(self, method: str, outcome: str, seconds: float) -> None:
        self.requests.labels(self.service, method, outcome).inc()
        self.request_seconds.labels(self.service, method).observe(seconds)
