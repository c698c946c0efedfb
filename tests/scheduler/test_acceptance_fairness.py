"""Acceptance tests 1-11 of spec/scheduler.md section 6: credit-weighted fairness, tiers,
placement, admission, debit-once, bad input, DAGs and matching, over MCP stdio."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scheduler.support import (
    dispatch_letters,
    ok,
    read_json,
    reason,
    refused,
    stdio_scheduler,
)

pytestmark = pytest.mark.anyio

# Long dispatch series: NORMAL survives a process kill, and keeps these tests quick.
FAST = {"AIOS_SYNCHRONOUS": "NORMAL"}


async def test_formula_gives_the_worked_example_increments_and_balances(tmp_path: Path) -> None:
    """Test 1 (strict tiers): C contracted/500 then M marketplace/500, kappa 2.5: dispatches go
    C (1.25, 497.5), C (2.506281, 495.0), M (5.0, 497.5)."""
    async with stdio_scheduler(tmp_path, "--tier-policy", "strict") as client:
        await ok(client, "register_client", client_id="C", tier="contracted", credits=500)
        await ok(client, "register_client", client_id="M", tier="marketplace", credits=500)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for _ in range(2):
            await ok(client, "submit_job", client_id="C", task="work", cost=2.5)
        await ok(client, "submit_job", client_id="M", task="work", cost=2.5)
        observed = []
        for _ in range(3):
            leased = await ok(client, "dispatch_next", agent_id="a")
            job = leased["job"]
            owner = await read_json(client, f"scheduler://clients/{job['client_id']}")
            observed.append((job["client_id"], leased["avruntime_after"], owner["balance"]))
            await ok(
                client, "complete_job", job_id=job["job_id"], lease_id=leased["lease_id"], result={}
            )
    assert [name for name, _, _ in observed] == ["C", "C", "M"]
    assert [balance for _, _, balance in observed] == [497.5, 495.0, 497.5]
    assert [avruntime for _, avruntime, _ in observed] == pytest.approx(
        [1.25, 2.506281, 5.0], abs=1e-6
    )


async def test_weighted_policy_interleaves_the_worked_example(tmp_path: Path) -> None:
    """Test 1 under the default weighted policy: the same increments, but M runs second
    because its avruntime 0 is below C's 1.25 (tiers act only through the weight)."""
    async with stdio_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="C", tier="contracted", credits=500)
        await ok(client, "register_client", client_id="M", tier="marketplace", credits=500)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for _ in range(2):
            await ok(client, "submit_job", client_id="C", task="work", cost=2.5)
        await ok(client, "submit_job", client_id="M", task="work", cost=2.5)
        increments = []
        for _ in range(3):
            leased = await ok(client, "dispatch_next", agent_id="a")
            increments.append((leased["job"]["client_id"], leased["avruntime_after"]))
            await ok(
                client,
                "complete_job",
                job_id=leased["job"]["job_id"],
                lease_id=leased["lease_id"],
                result={},
            )
    assert [name for name, _ in increments] == ["C", "M", "C"]
    assert [value for _, value in increments] == pytest.approx([1.25, 5.0, 2.506281], abs=1e-6)


async def test_a_burst_is_interleaved_not_served_fifo(tmp_path: Path) -> None:
    """Test 2 (defect D1): A submits 10 jobs then B 10, equal credits: ABAB... exactly."""
    async with stdio_scheduler(tmp_path) as client:
        for name in ("A", "B"):
            await ok(client, "register_client", client_id=name, tier="marketplace", credits=1000)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for name in ("A", "B"):
            for _ in range(10):
                await ok(client, "submit_job", client_id=name, task="work")
        order = await dispatch_letters(client, "a", 20, {"A": "A", "B": "B"})
    assert order == "AB" * 10


@pytest.mark.slow
async def test_shares_follow_credits_and_balances_fall(tmp_path: Path) -> None:
    """Test 3: A 3000 and B 1000 credits, 1000 queued jobs each: after 400 dispatches A has
    300 and B 100, balances 2700 and 900, avruntimes 105.342 and 105.305."""
    async with stdio_scheduler(tmp_path, env=FAST) as client:
        await ok(client, "register_client", client_id="A", tier="marketplace", credits=3000)
        await ok(client, "register_client", client_id="B", tier="marketplace", credits=1000)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for name in ("A", "B"):
            for _ in range(1000):
                await ok(client, "submit_job", client_id=name, task="work")
        order = await dispatch_letters(client, "a", 400, {"A": "A", "B": "B"})
        first = await read_json(client, "scheduler://clients/A")
        second = await read_json(client, "scheduler://clients/B")
    assert abs(order.count("A") - 300) <= 1
    assert abs(order.count("B") - 100) <= 1
    assert (first["balance"], second["balance"]) == pytest.approx((2700, 900), abs=1)
    assert first["avruntime"] == pytest.approx(105.342, abs=0.01)
    assert second["avruntime"] == pytest.approx(105.305, abs=0.01)


@pytest.mark.slow
async def test_cost_weighting_halves_the_share_of_twice_as_costly_jobs(tmp_path: Path) -> None:
    """Test 4: equal credits, A's jobs cost 2 and B's 1: 900 dispatches split 300/600."""
    async with stdio_scheduler(tmp_path, env=FAST) as client:
        for name in ("A", "B"):
            await ok(
                client, "register_client", client_id=name, tier="marketplace", credits=1_000_000
            )
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for _ in range(1000):
            await ok(client, "submit_job", client_id="A", task="work", cost=2)
            await ok(client, "submit_job", client_id="B", task="work", cost=1)
        order = await dispatch_letters(client, "a", 900, {"A": "A", "B": "B"})
    assert abs(order.count("A") - 300) <= 1
    assert abs(order.count("B") - 600) <= 1


async def test_strict_tiers_put_every_contracted_job_first(tmp_path: Path) -> None:
    """Test 5 (strict): C contracted with 10 credits beats M marketplace with 1,000,000:
    five C dispatches, then five M."""
    async with stdio_scheduler(tmp_path, "--tier-policy", "strict") as client:
        await ok(client, "register_client", client_id="C", tier="contracted", credits=10)
        await ok(client, "register_client", client_id="M", tier="marketplace", credits=1_000_000)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for name in ("M", "C"):
            for _ in range(5):
                await ok(client, "submit_job", client_id=name, task="work")
        order = await dispatch_letters(client, "a", 10, {"C": "C", "M": "M"})
    assert order == "CCCCCMMMMM"


async def test_weighted_tiers_give_contracted_work_four_times_the_share(tmp_path: Path) -> None:
    """Test 5 (weighted, system.md P4): both 1000 credits, 100 jobs each: CMCCCMCCCC, and
    after 50 dispatches C 40, M 10."""
    async with stdio_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="C", tier="contracted", credits=1000)
        await ok(client, "register_client", client_id="M", tier="marketplace", credits=1000)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for name in ("C", "M"):
            for _ in range(100):
                await ok(client, "submit_job", client_id=name, task="work")
        order = await dispatch_letters(client, "a", 50, {"C": "C", "M": "M"})
    assert order[:10] == "CMCCCMCCCC"
    assert (order.count("C"), order.count("M")) == (40, 10)


async def test_a_newcomer_starts_at_the_lowest_active_avruntime(tmp_path: Path) -> None:
    """Test 6: B arriving after 100 of A's dispatches starts at A's 105.304980 and then
    interleaves ABBABABA...; re-registering A is refused and keeps its avruntime."""
    async with stdio_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="A", tier="marketplace", credits=1000)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for _ in range(200):
            await ok(client, "submit_job", client_id="A", task="work")
        await dispatch_letters(client, "a", 100, {"A": "A"})
        before = await read_json(client, "scheduler://clients/A")
        await ok(client, "register_client", client_id="B", tier="marketplace", credits=1000)
        for _ in range(10):
            submitted = await ok(client, "submit_job", client_id="B", task="work")
        newcomer = await read_json(client, "scheduler://clients/B")
        order = await dispatch_letters(client, "a", 20, {"A": "A", "B": "B"})
        again = await refused(
            client, "register_client", client_id="A", tier="marketplace", credits=5
        )
        after = await read_json(client, "scheduler://clients/A")
    assert before["avruntime"] == pytest.approx(105.304980, abs=1e-6)
    assert newcomer["avruntime"] == pytest.approx(105.304980, abs=1e-6)
    assert submitted["client_avruntime"] == pytest.approx(105.304980, abs=1e-6)
    assert order == "ABBABABABABABABABABA"
    assert reason(again) == "already_exists"
    assert after["avruntime"] > before["avruntime"]
    assert after["balance"] == pytest.approx(1000 - 110)


async def test_admission_reserves_credits_of_queued_jobs(tmp_path: Path) -> None:
    """Test 7: 5 credits, cost 2: two jobs fit, the third is refused with available 1; a
    cancel releases its reservation; credits cannot be set below what is reserved."""
    async with stdio_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=5)
        first = await ok(client, "submit_job", client_id="c", task="one", cost=2)
        await ok(client, "submit_job", client_id="c", task="two", cost=2)
        third = await refused(client, "submit_job", client_id="c", task="three", cost=2)
        await ok(client, "cancel_job", job_id=first["job_id"])
        await ok(client, "submit_job", client_id="c", task="three", cost=2)
        lowered = await refused(client, "update_client", client_id="c", credits=3)
        state = await read_json(client, "scheduler://clients/c")
    assert third["code"] == "insufficient_credits"
    assert reason(third) == "insufficient_credits"
    assert (third["details"]["available"], third["details"]["required"]) == (1, 2)
    assert lowered["code"] == "insufficient_credits"
    assert (state["balance"], state["reserved"]) == (5, 4)


async def test_credits_are_debited_once_per_job(tmp_path: Path) -> None:
    """Test 8: three jobs of cost 2 from 10 credits leave 4 with three debits of 2; a
    crash-restarted job re-dispatched costs nothing more but still advances avruntime."""
    async with stdio_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=10)
        await ok(client, "register_agent", agent_id="a", profile={"name": "worker"})
        for _ in range(3):
            await ok(client, "submit_job", client_id="c", task="work", cost=2)
        await dispatch_letters(client, "a", 2, {"c": "c"})
        leased = await ok(client, "dispatch_next", agent_id="a")
        charged = await read_json(client, "scheduler://clients/c")
        crash = await ok(client, "report_exit", agent_id="a", exit_code=1, reason="segfault")
        again = await ok(client, "dispatch_next", agent_id="a")
        after = await read_json(client, "scheduler://clients/c")
    debits = [entry["delta"] for entry in charged["ledger"] if entry["kind"] == "debit"]
    assert debits == [-2, -2, -2]
    assert charged["balance"] == 4
    assert crash["job_state"] == "pending"
    assert again["job"]["job_id"] == leased["job"]["job_id"]
    assert after["balance"] == 4
    assert [e["kind"] for e in after["ledger"]].count("debit") == 3
    assert after["avruntime"] > charged["avruntime"]


BAD_INPUT: list[tuple[str, str, dict[str, object], str, str]] = [
    (
        "negative-credits",
        "register_client",
        {"client_id": "x", "tier": "marketplace", "credits": -1},
        "invalid_argument",
        "invalid_argument",
    ),
    (
        "unknown-tier",
        "register_client",
        {"client_id": "x", "tier": "gold", "credits": 1},
        "invalid_argument",
        "invalid_argument",
    ),
    (
        "client-id-129-chars",
        "register_client",
        {"client_id": "x" * 129, "tier": "marketplace", "credits": 1},
        "invalid_argument",
        "invalid_argument",
    ),
    (
        "cost-zero",
        "submit_job",
        {"client_id": "c", "task": "t", "cost": 0},
        "invalid_argument",
        "invalid_argument",
    ),
    (
        "cost-negative",
        "submit_job",
        {"client_id": "c", "task": "t", "cost": -1},
        "invalid_argument",
        "invalid_argument",
    ),
    (
        "empty-task",
        "submit_job",
        {"client_id": "c", "task": ""},
        "invalid_argument",
        "invalid_argument",
    ),
    (
        "unknown-client",
        "submit_job",
        {"client_id": "ghost", "task": "t"},
        "not_found",
        "client_not_registered",
    ),
    (
        "unknown-dependency",
        "submit_job",
        {"client_id": "c", "task": "t", "depends_on": ["job_0000000000000000"]},
        "not_found",
        "not_found",
    ),
]


async def test_bad_client_and_job_input_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """Test 9: each bad input is a typed error and the durable state digest is unchanged."""
    outcomes = []
    async with stdio_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=10)
        for name, tool, arguments, _, _ in BAD_INPUT:
            before = await read_json(client, "scheduler://state/digest")
            error = await refused(client, tool, **arguments)
            after = await read_json(client, "scheduler://state/digest")
            outcomes.append((name, error["code"], reason(error), after == before))
    assert outcomes == [(name, code, why, True) for name, _, _, code, why in BAD_INPUT]


async def test_a_dag_runs_by_levels_and_a_cycle_creates_nothing(tmp_path: Path) -> None:
    """Test 10: decompose -> {net, web, api} -> synth gets levels 0,1,1,1,2; synth is never
    dispatched before the three scans complete; a 3-cycle is refused with its keys."""
    tasks = [
        {"key": "decompose", "task": "plan"},
        {"key": "net", "task": "scan", "depends_on": ["decompose"]},
        {"key": "web", "task": "scan", "depends_on": ["decompose"]},
        {"key": "api", "task": "scan", "depends_on": ["decompose"]},
        {"key": "synth", "task": "report", "depends_on": ["net", "web", "api"]},
    ]
    cycle = [
        {"key": "x", "task": "t", "depends_on": ["z"]},
        {"key": "y", "task": "t", "depends_on": ["x"]},
        {"key": "z", "task": "t", "depends_on": ["y"]},
    ]
    async with stdio_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=100)
        for index in range(3):
            await ok(client, "register_agent", agent_id=f"a{index}", profile={"name": "w"})
        created = await ok(client, "submit_dag", client_id="c", tasks=tasks)
        levels = {entry["key"]: entry["level"] for entry in created["jobs"]}
        keys = {entry["job_id"]: entry["key"] for entry in created["jobs"]}
        first = await ok(client, "dispatch_next", agent_id="a0")
        blocked = await ok(client, "dispatch_next", agent_id="a1")
        await ok(
            client,
            "complete_job",
            job_id=first["job"]["job_id"],
            lease_id=first["lease_id"],
            result={},
        )
        scans = [await ok(client, "dispatch_next", agent_id=f"a{i}") for i in range(3)]
        for index, scan in enumerate(scans[:2]):
            await ok(
                client,
                "complete_job",
                job_id=scan["job"]["job_id"],
                lease_id=scan["lease_id"],
                result={"index": index},
            )
        still_blocked = await ok(client, "dispatch_next", agent_id="a0")
        await ok(
            client,
            "complete_job",
            job_id=scans[2]["job"]["job_id"],
            lease_id=scans[2]["lease_id"],
            result={},
        )
        synth = await ok(client, "dispatch_next", agent_id="a0")
        stats = await ok(client, "get_stats")
        refusal = await refused(client, "submit_dag", client_id="c", tasks=cycle)
        after = await ok(client, "get_stats")
    assert [levels[key] for key in ("decompose", "net", "web", "api", "synth")] == [0, 1, 1, 1, 2]
    assert keys[first["job"]["job_id"]] == "decompose"
    assert blocked["job"] is None
    assert sorted(keys[scan["job"]["job_id"]] for scan in scans) == ["api", "net", "web"]
    assert still_blocked["job"] is None
    assert keys[synth["job"]["job_id"]] == "synth"
    assert reason(refusal) == "cycle_detected"
    assert sorted(refusal["details"]["cycle"]) == ["x", "y", "z"]
    assert after["jobs_by_state"] == stats["jobs_by_state"]


async def test_capabilities_and_pins_decide_who_may_run_a_job(tmp_path: Path) -> None:
    """Test 11: a job needing playwright is not given to an agent without it (the queue stays
    1); an agent with it gets it; a job pinned to X is never given to Y."""
    async with stdio_scheduler(tmp_path) as client:
        await ok(client, "register_client", client_id="c", tier="marketplace", credits=100)
        await ok(client, "register_agent", agent_id="plain", profile={"name": "w"})
        await ok(
            client,
            "register_agent",
            agent_id="browser",
            profile={"name": "w", "capabilities": ["playwright"]},
        )
        await ok(client, "register_agent", agent_id="X", profile={"name": "w"})
        await ok(
            client, "submit_job", client_id="c", task="test", required_capabilities=["playwright"]
        )
        none = await ok(client, "dispatch_next", agent_id="plain")
        stats = await ok(client, "get_stats")
        given = await ok(client, "dispatch_next", agent_id="browser")
        pinned = await ok(client, "submit_job", client_id="c", task="mine", agent_id="X")
        refused_pin = await ok(client, "dispatch_next", agent_id="plain")
        taken = await ok(client, "dispatch_next", agent_id="X")
    assert none["job"] is None
    assert stats["queue_size"] == 1
    assert given["job"]["required_capabilities"] == ["playwright"]
    assert refused_pin["job"] is None
    assert taken["job"]["job_id"] == pinned["job_id"]
