"""Graph contract on both backends: fixture G of spec/memory.md section 6 (tests 17-21)."""

from __future__ import annotations

import pytest

from aios_memory.models import SaveItem
from aios_memory.service import MemoryService
from aios_shared.errors import InvalidArgument, NotFound
from tests.memory.conftest import ServiceFactory

pytestmark = pytest.mark.anyio

IDS = {letter: f"00000000-0000-7000-8000-00000000000{n}" for n, letter in enumerate("ABCDEFGH", 1)}
NAMES = {value: key for key, value in IDS.items()}


async def build_g(service: MemoryService) -> None:
    """Fixture G: facts A..H and the live edges of test 17 (E->F blocked_by is unlinked)."""
    for letter, memory_id in IDS.items():
        await service.save(
            SaveItem(type="fact", data={"assertion": f"Node {letter}"}, id=memory_id)
        )
    for source, target, relation in [
        ("A", "B", "references"),
        ("A", "C", "supports"),
        ("B", "D", "references"),
        ("C", "D", "derived_from"),
        ("D", "E", "references"),
        ("E", "A", "references"),
        ("F", "A", "supports"),
        ("C", "G", "contradicts"),
        ("E", "F", "blocked_by"),
    ]:
        await service.link(IDS[source], IDS[target], relation)
    await service.unlink(IDS["E"], IDS["F"], "blocked_by")


def letters(nodes: list[tuple[str, int]]) -> list[str]:
    return [f"{NAMES[node]}{depth}" for node, depth in nodes]


async def around(service: MemoryService, start: str, **arguments: object) -> list[str]:
    result = await service.neighbors(IDS[start], **arguments)  # type: ignore[arg-type]
    return letters([(node.id, node.depth) for node in result.nodes])


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param({"direction": "out", "depth": 0}, ["A0"], id="out-d0"),
        pytest.param({"direction": "out", "depth": 1}, ["A0", "B1", "C1"], id="out-d1"),
        pytest.param({"direction": "out", "depth": 2}, ["A0", "B1", "C1", "D2", "G2"], id="out-d2"),
        pytest.param(
            {"direction": "out", "depth": 3},
            ["A0", "B1", "C1", "D2", "G2", "E3"],
            id="out-d3",
        ),
        pytest.param(
            {"direction": "out", "depth": 4},
            ["A0", "B1", "C1", "D2", "G2", "E3"],
            id="out-d4-cycle",
        ),
        pytest.param({"direction": "in", "depth": 2}, ["A0", "E1", "F1", "D2"], id="in-d2"),
        pytest.param(
            {"direction": "both", "depth": 1}, ["A0", "B1", "C1", "E1", "F1"], id="both-d1"
        ),
        pytest.param(
            {"direction": "both", "depth": 2},
            ["A0", "B1", "C1", "E1", "F1", "D2", "G2"],
            id="both-d2",
        ),
        pytest.param(
            {"direction": "out", "depth": 6, "relations": ["references"]},
            ["A0", "B1", "D2", "E3"],
            id="references-d6",
        ),
    ],
)
async def test_breadth_first_search_on_g_lists_each_node_once_at_its_shortest_depth(
    open_service: ServiceFactory, arguments: dict[str, object], expected: list[str]
) -> None:
    """Test 17: BFS from A in (depth, id) order; cycles end, the start appears only at 0, the
    symmetric contradicts edge is followed both ways and the unlinked E->F never is."""
    async with open_service() as service:
        await build_g(service)
        assert await around(service, "A", **arguments) == expected


async def test_an_isolated_node_has_only_itself_and_self_links_are_refused(
    open_service: ServiceFactory,
) -> None:
    """Test 17: H has no edges; link(A, A) is invalid_argument/self_link."""
    async with open_service() as service:
        await build_g(service)
        assert await around(service, "H", depth=3) == ["H0"]
        with pytest.raises(InvalidArgument) as refused:
            await service.link(IDS["A"], IDS["A"], "references")
    assert refused.value.details["reason"] == "self_link"


async def test_depth_limits_and_nodes_max_cut_the_result_and_flag_it(
    open_service: ServiceFactory,
) -> None:
    """Test 18: depth 7 or -1 is depth_out_of_range; nodes_max=3 keeps [A, B, C], truncated."""
    async with open_service() as service:
        await build_g(service)
        for depth in (7, -1):
            with pytest.raises(InvalidArgument) as refused:
                await service.neighbors(IDS["A"], depth=depth)
            assert refused.value.details["reason"] == "depth_out_of_range"
        cut = await service.neighbors(IDS["A"], direction="out", depth=3, nodes_max=3)
    assert [NAMES[node.id] for node in cut.nodes] == ["A", "B", "C"]
    assert cut.truncated


async def test_edges_of_a_neighbourhood_and_tombstones_follow_the_rules(
    open_service: ServiceFactory,
) -> None:
    """Test 19: the induced live edges in (from, to, relation) order; after deleting D it is
    neither returned nor expanded, unless include_deleted flags and expands it."""
    async with open_service() as service:
        await build_g(service)
        result = await service.neighbors(IDS["A"], direction="out", depth=2)
        edges = [(NAMES[e.from_id], NAMES[e.to_id], e.relation) for e in result.edges]
        await service.delete(IDS["D"])
        hidden = await around(service, "A", direction="out", depth=3)
        shown = await service.neighbors(IDS["A"], direction="out", depth=3, include_deleted=True)
    assert edges == [
        ("A", "B", "references"),
        ("A", "C", "supports"),
        ("B", "D", "references"),
        ("C", "D", "derived_from"),
        ("C", "G", "contradicts"),
    ]
    assert hidden == ["A0", "B1", "C1", "G2"]
    assert letters([(n.id, n.depth) for n in shown.nodes]) == ["A0", "B1", "C1", "D2", "G2", "E3"]
    assert [NAMES[n.id] for n in shown.nodes if n.deleted] == ["D"]


async def test_shortest_paths_break_ties_by_id_order_and_respect_depth(
    open_service: ServiceFactory,
) -> None:
    """Test 20: A->E is [A,B,D,E] (not [A,C,D,E]); F->G is [F,A,C,G]; too far or unreachable
    is found false."""
    async with open_service() as service:
        await build_g(service)
        a_to_e = await service.path(IDS["A"], IDS["E"], direction="out")
        f_to_g = await service.path(IDS["F"], IDS["G"], direction="out")
        too_far = await service.path(IDS["A"], IDS["E"], depth_max=2)
        unreachable = await service.path(IDS["H"], IDS["A"])
    assert [NAMES[n] for n in a_to_e.nodes] == ["A", "B", "D", "E"]
    assert a_to_e.length == 3
    assert [(NAMES[e.from_id], NAMES[e.to_id]) for e in a_to_e.edges] == [
        ("A", "B"),
        ("B", "D"),
        ("D", "E"),
    ]
    assert [NAMES[n] for n in f_to_g.nodes] == ["F", "A", "C", "G"]
    assert not too_far.found
    assert not unreachable.found


async def test_links_are_unique_per_triple_normalized_and_checked(
    open_service: ServiceFactory,
) -> None:
    """Test 21: relinking is created false; contradicts is stored once; evolved_from flips;
    unlink then link revives; bad relation, unknown target and working endpoint are refused."""
    async with open_service() as service:
        await build_g(service)
        again = await service.link(IDS["A"], IDS["B"], "references")
        symmetric = await service.link(IDS["G"], IDS["C"], "contradicts")
        flipped = await service.link(IDS["H"], IDS["A"], "evolved_from")
        await service.unlink(IDS["A"], IDS["B"], "references")
        revived = await service.link(IDS["A"], IDS["B"], "references", weight=0.5)
        out = await service.neighbors(IDS["A"], direction="out", depth=1)
        with pytest.raises(InvalidArgument) as bad_relation:
            await service.link(IDS["A"], IDS["B"], "likes")
        with pytest.raises(NotFound):
            await service.link(IDS["A"], "00000000-0000-7000-8000-0000000000ff", "references")
        working = await service.save(
            SaveItem(type="fact", data={"assertion": "short-lived"}, tier="working")
        )
        with pytest.raises(InvalidArgument) as not_linkable:
            await service.link(IDS["A"], working.id, "references")
    assert not again.created
    assert not symmetric.created
    assert (symmetric.edge.from_id, symmetric.edge.to_id) == (IDS["C"], IDS["G"])
    assert (flipped.edge.from_id, flipped.edge.to_id, flipped.edge.relation) == (
        IDS["A"],
        IDS["H"],
        "evolved_into",
    )
    assert revived.edge.weight == 0.5
    assert [NAMES[n.id] for n in out.nodes] == ["A", "B", "C", "H"]
    assert bad_relation.value.details["reason"] == "invalid_relation"
    assert not_linkable.value.details["reason"] == "working_tier_not_linkable"
