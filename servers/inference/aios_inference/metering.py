"""Metering: what a call consumed, what it costs by the registry's prices, and its ledger row."""

from __future__ import annotations

from dataclasses import dataclass

from aios_inference.backends.base import BackendUsage
from aios_inference.config import ModelConfig
from aios_inference.gate import Priority
from aios_inference.models import Tier, Usage, UsageRecord
from aios_inference.store import now_iso

__all__ = ["Caller", "record_of", "usage_of"]


@dataclass(frozen=True)
class Caller:
    """Who pays and how they queue: metering keys and scheduling priority."""

    caller: str = "local"
    agent_id: str | None = None
    job_id: str | None = None
    tier: Tier = "marketplace"
    fairness_key: str | None = None

    @property
    def priority(self) -> Priority:
        return Priority(tier=self.tier, fairness_key=self.fairness_key or self.caller)


def usage_of(entry: ModelConfig, counts: BackendUsage, first_token_ms: float | None) -> Usage:
    """The backend's counts priced per 1000 tokens (prompt and completion apart)."""
    cost = (
        counts.prompt_tokens * entry.price_prompt_per_1k
        + counts.completion_tokens * entry.price_completion_per_1k
    ) / 1000
    assert cost >= 0, cost
    return Usage(
        prompt_tokens=counts.prompt_tokens,
        completion_tokens=counts.completion_tokens,
        total_ms=counts.total_ms,
        load_ms=counts.load_ms,
        prompt_ms=counts.prompt_ms,
        completion_ms=counts.completion_ms,
        first_token_ms=first_token_ms,
        cost=cost,
        model=entry.name,
        backend=entry.backend,
    )


def record_of(
    request_id: str,
    operation: str,
    entry: ModelConfig,
    caller: Caller,
    usage: Usage,
    outcome: str,
) -> UsageRecord:
    """The ledger row of one call, keyed by caller, agent and job."""
    return UsageRecord(
        request_id=request_id,
        recorded_at=now_iso(),
        caller=caller.caller,
        agent_id=caller.agent_id,
        job_id=caller.job_id,
        operation=operation,
        model=entry.name,
        backend=entry.backend,
        outcome=outcome,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_ms=usage.total_ms,
        load_ms=usage.load_ms,
        prompt_ms=usage.prompt_ms,
        completion_ms=usage.completion_ms,
        cost=usage.cost,
    )
