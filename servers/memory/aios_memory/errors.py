"""The memory server's typed errors: the shared kinds with the spec's ``details.reason``.

InvalidArgument  unknown_type, schema_violation, content_too_large, invalid_id, invalid_relation,
                 invalid_namespace, invalid_tag, self_link, depth_out_of_range, ttl_out_of_range,
                 too_many_items, query_too_long, empty_query, type_change_forbidden,
                 working_tier_not_linkable, semantic_search_disabled
NotFound         missing, deleted, expired, version_missing
Conflict         version_mismatch, concurrent_write, not_conflicted, idempotency_key_reused,
                 id_exists
SubsystemUnavailable  backend_unavailable
Timeout          query_timeout
"""

from __future__ import annotations

from typing import Any

from aios_shared.errors import Conflict, InvalidArgument, NotFound, SubsystemUnavailable

__all__ = ["backend_unavailable", "conflict", "invalid", "missing"]


def invalid(reason: str, message: str, hint: str | None = None, **details: Any) -> InvalidArgument:
    """An ``invalid_argument`` error with ``details.reason``."""
    return InvalidArgument(message, hint=hint, details={"reason": reason, **details})


def missing(reason: str, memory_id: str, message: str | None = None, **details: Any) -> NotFound:
    """A ``not_found`` error for a memory (reason missing, deleted, expired, version_missing)."""
    text = message or {
        "missing": f"No memory has id {memory_id}.",
        "deleted": f"Memory {memory_id} is deleted.",
        "expired": f"Memory {memory_id} has expired.",
    }.get(reason, f"Memory {memory_id}: {reason}.")
    hint = "Use restore to bring it back." if reason == "deleted" else None
    return NotFound(text, hint=hint, details={"reason": reason, "id": memory_id, **details})


def conflict(reason: str, message: str, hint: str | None = None, **details: Any) -> Conflict:
    """A ``conflict`` error with ``details.reason``."""
    return Conflict(message, hint=hint, details={"reason": reason, **details})


def backend_unavailable(backend: str, why: str) -> SubsystemUnavailable:
    """The persistent backend cannot be reached (fails fast, never hangs)."""
    return SubsystemUnavailable(
        f"The memory backend ({backend}) is unavailable: {why}.",
        hint="Retry once the database is back; no restart of this server is needed.",
        details={"reason": "backend_unavailable", "backend": backend},
    )
