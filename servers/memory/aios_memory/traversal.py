"""Breadth-first search and shortest paths over a backend's ``expand`` primitive (spec 2.9).

``expand(frontier)`` returns the live edges leaving a frontier under the caller's relation,
direction and tombstone rules as ``(frontier node, relation, neighbour)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

__all__ = ["Expand", "breadth_first", "shortest_path"]

Expand = Callable[[Sequence[str]], Awaitable[list[tuple[str, str, str]]]]


async def breadth_first(
    start: str, depth: int, expand: Expand, nodes_max: int
) -> list[tuple[str, int]]:
    """``(id, depth)`` in (depth, id) order, each node once at its shortest hop distance, at most
    ``nodes_max + 1`` rows (the extra row tells the caller the result was cut)."""
    seen: set[str] = {start}
    order: list[tuple[str, int]] = [(start, 0)]
    frontier = [start]
    for level in range(1, depth + 1):
        if not frontier or len(order) > nodes_max:
            break
        edges = await expand(frontier)
        fresh = sorted({neighbour for _, _, neighbour in edges if neighbour not in seen})
        seen.update(fresh)
        order.extend((node, level) for node in fresh)
        frontier = fresh
    return order[: nodes_max + 1]


async def shortest_path(
    start: str, target: str, depth_max: int, expand: Expand
) -> list[tuple[str, str]] | None:
    """The lexicographically smallest shortest path as ``[(node, relation used to reach it)]``
    (the start has relation ""), or ``None`` beyond ``depth_max``.

    Forward BFS to the target's level, backward marking of the nodes on shortest paths, then a
    greedy forward walk through the smallest marked successor.
    """
    if start == target:
        return [(start, "")]
    seen: set[str] = {start}
    frontier = [start]
    levels: list[list[tuple[str, str, str]]] = []
    for _ in range(depth_max):
        edges = [edge for edge in await expand(frontier) if edge[2] not in seen]
        if not edges:
            return None
        levels.append(edges)
        reached = {neighbour for _, _, neighbour in edges}
        if target in reached:
            break
        seen.update(reached)
        frontier = sorted(reached)
    else:
        return None
    marked: list[set[str]] = [set() for _ in levels]
    wanted = {target}
    for index in range(len(levels) - 1, -1, -1):
        marked[index] = wanted
        wanted = {source for source, _, neighbour in levels[index] if neighbour in wanted}
    path = [(start, "")]
    current = start
    for index, edges in enumerate(levels):
        choices = sorted(
            (neighbour, relation)
            for source, relation, neighbour in edges
            if source == current and neighbour in marked[index]
        )
        assert choices, (current, index)
        current = choices[0][0]
        path.append(choices[0])
    assert path[-1][0] == target, path
    return path
