"""Vector clocks and change reasons (spec/memory.md sections 2.5, 2.6; test 11)."""

from __future__ import annotations

import json
from itertools import combinations_with_replacement

import pytest

from aios_memory.clocks import REASONS, Reason, compare, join_reasons, merge


def test_the_papers_concurrent_example_and_its_merge() -> None:
    """Test 11: {a:5,b:3} vs {a:4,b:4} is concurrent; the merge is the component-wise max."""
    assert compare({"a": 5, "b": 3}, {"a": 4, "b": 4}) == "concurrent"
    assert merge({"a": 5, "b": 3}, {"a": 4, "b": 4}) == {"a": 5, "b": 4}


def test_missing_keys_read_zero_and_order_is_exact() -> None:
    """Test 11: a zero entry equals a missing one; before/after are each other's reverse."""
    assert compare({"a": 1}, {"a": 1, "b": 0}) == "equal"
    assert compare({"a": 1}, {"a": 2}) == "before"
    assert compare({"a": 2}, {"a": 1}) == "after"


def test_clocks_survive_a_json_round_trip_unchanged() -> None:
    """Test 11: actor keys are strings, so JSON cannot fake concurrency (Elixir defect 11)."""
    clock = {"agent:a": 3, "node-1": 1}
    again = json.loads(json.dumps(clock))
    assert compare(clock, again) == "equal"
    assert again == clock


EXPECTED_JOINS: dict[frozenset[Reason], Reason] = {
    frozenset({"observation"}): "observation",
    frozenset({"inference"}): "inference",
    frozenset({"correction"}): "correction",
    frozenset({"decay"}): "decay",
    frozenset({"observation", "inference"}): "inference",
    frozenset({"observation", "correction"}): "correction",
    frozenset({"observation", "decay"}): "decay",
    frozenset({"inference", "correction"}): "correction",
    frozenset({"inference", "decay"}): "decay",
    frozenset({"correction", "decay"}): "decay",
}


@pytest.mark.parametrize(("a", "b"), list(combinations_with_replacement(REASONS, 2)))
def test_all_ten_reason_joins(a: Reason, b: Reason) -> None:
    """Test 11: join(x,x) = x, join(obs,x) = x, join(dec,x) = dec, join(inf,cor) = cor, and
    join is commutative."""
    assert join_reasons(a, b) == EXPECTED_JOINS[frozenset({a, b})]
    assert join_reasons(b, a) == join_reasons(a, b)


def test_canonical_bytes_of_the_spec_payload() -> None:
    """Test 7: the exact RFC 8785 bytes of the login fact."""
    from aios_memory.canonical import canonical_bytes, payload_of

    payload = payload_of(
        "fact",
        {
            "assertion": "Login test requires 60s timeout",
            "confidence": 0.95,
            "source": "test_run_2026_03_10",
        },
        ["testing", "timeout", "login"],
        None,
        None,
    )
    assert canonical_bytes(payload) == (
        b'{"data":{"assertion":"Login test requires 60s timeout","confidence":0.95,'
        b'"source":"test_run_2026_03_10"},"tags":["login","testing","timeout"],"type":"fact"}'
    )
