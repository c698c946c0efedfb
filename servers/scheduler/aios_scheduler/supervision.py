"""OTP supervision rules (spec/scheduler.md section 3.1) as pure functions."""

from __future__ import annotations

from collections.abc import Sequence

from aios_scheduler.models import Agent, Strategy

__all__ = ["exceeds_intensity", "restart_set", "window"]


def window(log: Sequence[int], now_ms: int, period_s: float) -> list[int]:
    """Crash times inside the inclusive window [now - period, now]."""
    start = now_ms - round(period_s * 1000)
    return [at for at in log if start <= at <= now_ms]


def exceeds_intensity(log: Sequence[int], now_ms: int, period_s: float, restarts_max: int) -> bool:
    """True when the crashes in the inclusive window, this one included, exceed the maximum."""
    return len(window(log, now_ms, period_s)) > restarts_max


def restart_set(strategy: Strategy, crashed: Agent, members: Sequence[Agent]) -> list[Agent]:
    """The agents restarted by one crash, in start order."""
    ordered = sorted(members, key=lambda agent: (agent.start_order, agent.agent_id))
    if strategy == "one_for_one":
        return [crashed]
    if strategy == "one_for_all":
        return [agent for agent in ordered if agent.status != "stopped" or agent is crashed]
    return [
        agent
        for agent in ordered
        if agent.agent_id == crashed.agent_id
        or (agent.start_order > crashed.start_order and agent.status != "stopped")
    ]
