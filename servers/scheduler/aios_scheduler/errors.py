"""The scheduler's typed errors (spec/scheduler.md section 5): a shared kind, a finer reason.

InvalidArgument   -> invalid_argument, cycle_detected, pipeline_constraint_violation,
                     invalid_weights, result_too_large
NotFound          -> not_found, client_not_registered, pipeline_not_found, unknown_stage
Conflict          -> already_exists, invalid_state, lease_invalid, agent_busy, pipeline_closed,
                     retries_exhausted, supervisor_halted, group_terminated
PermissionDenied  -> unauthorized_publish
InsufficientCredits -> insufficient_credits
ResourceExhausted -> queue_full
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aios_shared.errors import (
    AiosError,
    Conflict,
    InsufficientCredits,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

__all__ = [
    "agent_busy",
    "already_exists",
    "bad_argument",
    "client_not_registered",
    "insufficient_credits",
    "invalid_state",
    "lease_invalid",
    "not_found",
    "reasoned",
]


def reasoned(
    error_class: type[AiosError], reason: str, message: str, /, **details: Any
) -> AiosError:
    """An error of the shared kind ``error_class`` with the scheduler's ``reason`` and its
    fields."""
    return error_class(message, details={"reason": reason, **details})


def bad_argument(message: str, **details: Any) -> AiosError:
    return reasoned(InvalidArgument, "invalid_argument", message, **details)


def not_found(kind: str, identifier: str) -> AiosError:
    return reasoned(NotFound, "not_found", f"No {kind} {identifier!r}.", kind=kind, id=identifier)


def client_not_registered(client_id: str) -> AiosError:
    return reasoned(
        NotFound,
        "client_not_registered",
        f"Client {client_id!r} is not registered. Call register_client first.",
        client_id=client_id,
    )


def already_exists(kind: str, identifier: str) -> AiosError:
    return reasoned(Conflict, "already_exists", f"{kind} {identifier!r} already exists.", kind=kind)


def invalid_state(entity: str, current: str, expected: Sequence[str]) -> AiosError:
    return reasoned(
        Conflict,
        "invalid_state",
        f"The {entity} is {current}; this needs it to be {' or '.join(expected)}.",
        entity=entity,
        current=current,
        expected=list(expected),
    )


def lease_invalid(lease: str, lease_id: str) -> AiosError:
    return reasoned(
        Conflict,
        "lease_invalid",
        f"Lease {lease_id!r} is not valid ({lease}). Call dispatch_next for a new job.",
        lease=lease,
    )


def agent_busy(agent_id: str, job_id: str | None) -> AiosError:
    return reasoned(
        Conflict,
        "agent_busy",
        f"Agent {agent_id!r} is busy with job {job_id}. Finish it first.",
        agent_id=agent_id,
        job_id=job_id,
    )


def insufficient_credits(available: float, required: float) -> AiosError:
    return reasoned(
        InsufficientCredits,
        "insufficient_credits",
        f"Available credits {available:g} are below the required {required:g}.",
        available=available,
        required=required,
    )


def queue_full(limit: int) -> AiosError:
    return reasoned(
        ResourceExhausted,
        "queue_full",
        f"The queue holds queue_depth_max={limit} pending jobs. Retry when it drains.",
        limit=limit,
    )


def unauthorized_publish(stage: str, event_type: str) -> AiosError:
    return reasoned(
        PermissionDenied,
        "unauthorized_publish",
        f"Stage {stage!r} does not publish {event_type!r}.",
        stage=stage,
        event_type=event_type,
    )
