"""Acceptance tests 28-33 of spec/scheduler.md section 6: case-study scores, EWMA, evaluator
bad input, reputation coupling, pipeline validation and publish rules, over MCP stdio."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from aios_scheduler.evaluation import DEFAULT_WEIGHTS, DIMENSIONS, distance
from tests.scheduler.support import ok, read_json, reason, refused, stdio_scheduler

pytestmark = pytest.mark.anyio

REFERENCE_STAGES: list[dict[str, Any]] = [
    {"name": "recon", "publishes": ["page_discovered", "api_found", "sitemap_built"]},
    {
        "name": "behavior",
        "subscribes": ["page_discovered", "sitemap_built"],
        "publishes": ["test_generated", "flow_mapped"],
    },
    {
        "name": "load",
        "subscribes": ["api_found", "flow_mapped"],
        "publishes": ["load_result", "perf_metric"],
    },
    {
        "name": "observer",
        "subscribes": ["test_generated", "load_result", "perf_metric"],
        "publishes": ["anomaly_detected", "observation_complete"],
    },
    {
        "name": "synthesis",
        "subscribes": ["test_generated", "load_result", "anomaly_detected", "observation_complete"],
        "publishes": ["final_report"],
    },
]


def _scores(*values: float) -> dict[str, float]:
    return dict(zip(DIMENSIONS, values, strict=True))


def _flat(value: float) -> dict[str, float]:
    """Raw scores whose normalized vector is ``value`` everywhere (composite = value)."""
    return _scores(value, value, value, value, 1 - value, 1 - value)


async def _agent(client: Client, agent_id: str = "a") -> None:
    await ok(client, "register_agent", agent_id=agent_id, profile={"name": "w"})


async def test_case_study_scores_match_the_corrected_values(tmp_path: Path) -> None:
    """Test 28: web 0.8765 (default), legal preset 0.8725, security with default weights
    0.8485; revisions 2 of 4 give r = 0.5."""
    async with stdio_scheduler(tmp_path) as client:
        for agent in ("web", "legal", "security", "revised"):
            await _agent(client, agent)
        web = await ok(
            client, "evaluate", agent_id="web", scores=_scores(0.87, 0.92, 0.78, 0.85, 0.05, 0.12)
        )
        legal = await ok(
            client,
            "evaluate",
            agent_id="legal",
            scores=_scores(0.91, 0.95, 0.65, 0.72, 0.12, 0.20),
            preset="legal_analysis",
        )
        security = await ok(
            client,
            "evaluate",
            agent_id="security",
            scores=_scores(0.83, 0.89, 0.82, 0.79, 0.09, 0.15),
        )
        partial = _scores(0.5, 0.5, 0.5, 0.5, 0.5, 0.0)
        del partial["revision_count"]
        revised = await ok(
            client, "evaluate", agent_id="revised", scores=partial, revisions=2, revisions_max=4
        )
    assert web["composite"] == pytest.approx(0.8765, abs=1e-9)
    assert web["composite_rounded"] == 0.8765
    assert legal["composite"] == pytest.approx(0.8725, abs=1e-9)
    assert security["composite"] == pytest.approx(0.8485, abs=1e-9)
    assert revised["normalized"]["revision_count"] == pytest.approx(0.5)


async def test_reputation_is_an_ewma_with_alpha_point_three(tmp_path: Path) -> None:
    """Test 29: composites 0.8, 0.6, 1.0 give 0.8, 0.74, 0.818; 0.0 then thirteen 1.0 give
    0.990311; the web/legal weighted distance is 0.083815."""
    async with stdio_scheduler(tmp_path) as client:
        await _agent(client, "a")
        await _agent(client, "b")
        series = [
            (await ok(client, "evaluate", agent_id="a", scores=_flat(v)))["reputation"]
            for v in (0.8, 0.6, 1.0)
        ]
        for value in [0.0] + [1.0] * 13:
            last = await ok(client, "evaluate", agent_id="b", scores=_flat(value))
        reputation = await ok(client, "get_reputation", agent_id="b")
        ranked = await ok(client, "rank_agents")
    web = _scores(0.87, 0.92, 0.78, 0.85, 0.95, 0.88)
    legal = _scores(0.91, 0.95, 0.65, 0.72, 0.88, 0.80)
    assert series == pytest.approx([0.8, 0.74, 0.818], abs=1e-6)
    assert last["evaluation_count"] == 14
    assert reputation == pytest.approx(0.990311, abs=1e-6)
    assert [entry["agent_id"] for entry in ranked["agents"]] == ["b", "a"]
    assert distance(web, legal, DEFAULT_WEIGHTS) == pytest.approx(0.083815, abs=1e-6)


async def test_bad_evaluator_input_is_refused_and_changes_no_reputation(tmp_path: Path) -> None:
    """Test 30: weights summing to 0.9, negative, missing or extra keys -> invalid_weights;
    error_rate -0.5, quality 1.2 or a missing dimension -> invalid_argument."""
    good = dict(DEFAULT_WEIGHTS)
    bad_weights = [
        {**good, "quality": 0.15},
        {**good, "quality": -0.05, "adherence": 0.50},
        {k: v for k, v in good.items() if k != "cost"} | {"speed": 0.30},
        {**good, "novelty": 0.0},
    ]
    bad_scores = [
        {**_flat(0.5), "error_rate": -0.5},
        {**_flat(0.5), "quality": 1.2},
        {k: v for k, v in _flat(0.5).items() if k != "speed"},
    ]
    async with stdio_scheduler(tmp_path) as client:
        await _agent(client)
        await ok(client, "evaluate", agent_id="a", scores=_flat(0.7))
        weight_errors = [
            reason(await refused(client, "evaluate", agent_id="a", scores=_flat(0.5), weights=w))
            for w in bad_weights
        ]
        set_error = reason(await refused(client, "set_weights", weights=bad_weights[0]))
        score_errors = [
            await refused(client, "evaluate", agent_id="a", scores=s) for s in bad_scores
        ]
        reputation = await ok(client, "get_reputation", agent_id="a")
        history = await read_json(client, "scheduler://evaluations/a")
    assert weight_errors == ["invalid_weights"] * 4
    assert set_error == "invalid_weights"
    assert [(e["code"], reason(e)) for e in score_errors] == [
        ("invalid_argument", "invalid_argument")
    ] * 3
    assert reputation == pytest.approx(0.7)
    assert len(history["evaluations"]) == 1


def test_non_finite_scores_are_refused() -> None:
    """Test 30: NaN (which JSON cannot carry) is refused by the normalizer itself."""
    from aios_scheduler.evaluation import normalize
    from aios_shared.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        normalize({**_flat(0.5), "quality": math.nan})


@pytest.mark.parametrize(
    ("beta", "expected"),
    [pytest.param("0.5", 0.892857, id="beta-0.5"), pytest.param("0", 1.25, id="beta-0")],
)
async def test_reputation_couples_into_the_dispatch_weight(
    tmp_path: Path, beta: str, expected: float
) -> None:
    """Test 31: beta 0.5 and reputation 0.8 give C contracted/500 with kappa 2.5 an
    increment of 0.892857; with beta 0 it is 1.25."""
    async with stdio_scheduler(tmp_path, env={"AIOS_BETA": beta}) as client:
        await _agent(client)
        await ok(client, "evaluate", agent_id="a", scores=_flat(0.8))
        await ok(client, "register_client", client_id="C", tier="contracted", credits=500)
        await ok(client, "submit_job", client_id="C", task="work", cost=2.5)
        leased = await ok(client, "dispatch_next", agent_id="a")
    assert leased["avruntime_after"] == pytest.approx(expected, abs=1e-6)


async def test_pipeline_subscriptions_must_follow_earlier_publications(tmp_path: Path) -> None:
    """Test 32: the reference pipeline is accepted; load before behavior misses
    flow_mapped; two bad stages are both listed in order; duplicate names are refused."""
    stages = REFERENCE_STAGES
    moved = [stages[0], stages[2], stages[1], *stages[3:]]
    two_bad = [stages[2], stages[1], stages[0], *stages[3:]]
    duplicate = [stages[0], {**stages[1], "name": "recon"}]
    async with stdio_scheduler(tmp_path) as client:
        created = await ok(client, "create_pipeline", name="webtest", stages=stages)
        violation = await refused(client, "create_pipeline", name="webtest", stages=moved)
        both = await refused(client, "create_pipeline", name="webtest", stages=two_bad)
        duplicated = await refused(client, "create_pipeline", name="webtest", stages=duplicate)
    assert created["pipeline_id"].startswith("pipe_webtest_")
    assert reason(violation) == "pipeline_constraint_violation"
    assert violation["details"]["violations"] == [{"stage": "load", "missing": ["flow_mapped"]}]
    assert [v["stage"] for v in both["details"]["violations"]] == ["load", "behavior"]
    assert reason(duplicated) == "invalid_argument"


async def test_publishing_is_checked_and_reading_follows_subscriptions(tmp_path: Path) -> None:
    """Test 33: behavior publishing api_found -> unauthorized_publish; unknown stage ->
    unknown_stage; 5 publishes get sequences 0-4; observer reads only its types in order;
    after complete_pipeline publishing is pipeline_closed and the status stays completed."""
    events = [
        ("recon", "page_discovered"),
        ("behavior", "test_generated"),
        ("load", "load_result"),
        ("recon", "api_found"),
        ("load", "perf_metric"),
    ]
    async with stdio_scheduler(tmp_path) as client:
        pipeline = (await ok(client, "create_pipeline", name="web", stages=REFERENCE_STAGES))[
            "pipeline_id"
        ]
        unauthorized = await refused(
            client,
            "publish_event",
            pipeline_id=pipeline,
            stage="behavior",
            event_type="api_found",
            data={},
        )
        unknown = await refused(
            client,
            "publish_event",
            pipeline_id=pipeline,
            stage="nobody",
            event_type="api_found",
            data={},
        )
        sequences = [
            (
                await ok(
                    client,
                    "publish_event",
                    pipeline_id=pipeline,
                    stage=stage,
                    event_type=kind,
                    data={"n": index},
                )
            )["sequence"]
            for index, (stage, kind) in enumerate(events)
        ]
        observed = await ok(client, "read_events", pipeline_id=pipeline, stage="observer")
        closed = await ok(client, "complete_pipeline", pipeline_id=pipeline, status="completed")
        late = await refused(
            client,
            "publish_event",
            pipeline_id=pipeline,
            stage="recon",
            event_type="api_found",
            data={},
        )
        status = await read_json(client, f"scheduler://pipelines/{pipeline}")
    assert (unauthorized["code"], reason(unauthorized)) == (
        "permission_denied",
        "unauthorized_publish",
    )
    assert reason(unknown) == "unknown_stage"
    assert sequences == [0, 1, 2, 3, 4]
    assert [(e["type"], e["sequence"]) for e in observed["events"]] == [
        ("test_generated", 1),
        ("load_result", 2),
        ("perf_metric", 4),
    ]
    assert closed["status"] == "completed"
    assert reason(late) == "pipeline_closed"
    assert status["status"] == "completed"
