"""Restart decisions follow OTP: intensity within an inclusive window, backoff, policies."""

from __future__ import annotations

import pytest

from aios_host.supervision import RestartIntensity, decide_restart


def intensity(max_restarts: int = 5, period_s: float = 60.0) -> RestartIntensity:
    return RestartIntensity(
        max_restarts=max_restarts, period_s=period_s, backoff_initial_s=0.1, backoff_max_s=1.0
    )


def test_five_crashes_in_a_period_restart_and_the_sixth_fails() -> None:
    """Default intensity 5 in 60 s: a child that crashes 6 times in 60 s is marked failed."""
    history = intensity()
    decisions = [decide_restart("permanent", 1, history, now=float(t)) for t in range(6)]
    assert decisions == ["restart"] * 5 + ["fail"]


def test_the_window_is_inclusive_at_exactly_the_period() -> None:
    """A restart exactly period_s ago still counts; one a moment older does not."""
    at_boundary = intensity(max_restarts=1, period_s=60.0)
    assert decide_restart("permanent", 1, at_boundary, now=0.0) == "restart"
    assert decide_restart("permanent", 1, at_boundary, now=60.0) == "fail"
    past_boundary = intensity(max_restarts=1, period_s=60.0)
    assert decide_restart("permanent", 1, past_boundary, now=0.0) == "restart"
    assert decide_restart("permanent", 1, past_boundary, now=60.001) == "restart"


def test_crashes_spread_over_time_never_exhaust_the_budget() -> None:
    history = intensity(max_restarts=2, period_s=10.0)
    assert all(
        decide_restart("permanent", 1, history, now=step * 6.0) == "restart" for step in range(20)
    )


def test_backoff_doubles_with_each_recent_restart_up_to_the_ceiling() -> None:
    history = intensity(max_restarts=10)
    delays = []
    for t in range(6):
        history.record_crash(float(t))
        delays.append(history.backoff_s())
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.mark.parametrize(
    ("policy", "exit_code", "expected"),
    [
        ("permanent", 0, "restart"),
        ("permanent", 1, "restart"),
        ("permanent", None, "restart"),
        ("transient", 0, "stop"),
        ("transient", 1, "restart"),
        ("temporary", 1, "stop"),
    ],
)
def test_restart_policy_decides_whether_an_exit_is_restarted(
    policy: str, exit_code: int | None, expected: str
) -> None:
    assert decide_restart(policy, exit_code, intensity(), now=0.0) == expected  # type: ignore[arg-type]  # parametrized literal
