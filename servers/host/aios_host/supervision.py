"""OTP-style restart decisions, kept pure so they are testable with a fake clock.

A child may restart at most ``max_restarts`` times within any ``period_s`` window (inclusive:
a restart exactly ``period_s`` ago still counts, as in Erlang/OTP). One more crash inside the
window marks the child failed; the supervisor then stops restarting it and reports it.
Between restarts the delay doubles from ``backoff_initial_s`` up to ``backoff_max_s``, and
resets once the child has stayed up for a whole period.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["RestartDecision", "RestartIntensity", "decide_restart"]

RestartDecision = Literal["restart", "stop", "fail"]


@dataclass
class RestartIntensity:
    """The restart history of one child."""

    max_restarts: int
    period_s: float
    backoff_initial_s: float
    backoff_max_s: float
    restarts: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        assert self.max_restarts >= 0, self.max_restarts
        assert self.period_s > 0, self.period_s

    def record_crash(self, now: float) -> bool:
        """Record a crash at ``now``; True when a restart is still within the intensity."""
        while self.restarts and now - self.restarts[0] > self.period_s:
            self.restarts.popleft()
        if len(self.restarts) >= self.max_restarts:
            return False
        self.restarts.append(now)
        return True

    def backoff_s(self) -> float:
        """Delay before the next restart: doubling with each restart in the window."""
        if not self.restarts:
            return self.backoff_initial_s
        exponent = len(self.restarts) - 1
        return min(self.backoff_max_s, self.backoff_initial_s * float(1 << exponent))

    def recent(self, now: float) -> int:
        return sum(1 for at in self.restarts if now - at <= self.period_s)


def decide_restart(
    policy: Literal["permanent", "transient", "temporary"],
    exit_code: int | None,
    intensity: RestartIntensity,
    now: float,
) -> RestartDecision:
    """What to do after a child stopped. ``exit_code`` None means the connection died while the
    process was still running (treated as a crash)."""
    if policy == "temporary":
        return "stop"
    if policy == "transient" and exit_code == 0:
        return "stop"
    return "restart" if intensity.record_crash(now) else "fail"
