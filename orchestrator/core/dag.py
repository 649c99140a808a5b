"""A small directed graph for the hot paths of every command: adjacency, traversal, stable order.

networkx is the project's graph library, but importing it costs about 90 ms, a third of what a
whole ``query rdeps`` on 1,000 images may take. Commands therefore run on this structure, and
networkx is imported only where its algorithms are needed: naming the exact cycle of a graph that
has one (``find_cycle``) and handing the graph to callers who want networkx (``to_networkx``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import networkx as nx

T = TypeVar("T")


class Dag(Generic[T]):
    def __init__(self) -> None:
        self._parents: dict[T, set[T]] = {}
        self._children: dict[T, set[T]] = {}

    def add_node(self, node: T) -> None:
        self._parents.setdefault(node, set())
        self._children.setdefault(node, set())

    def add_edge(self, parent: T, child: T) -> None:
        self.add_node(parent)
        self.add_node(child)
        self._parents[child].add(parent)
        self._children[parent].add(child)

    def __contains__(self, node: object) -> bool:
        return node in self._parents

    def __iter__(self) -> Iterator[T]:
        return iter(self._parents)

    def predecessors(self, node: T) -> set[T]:
        return self._parents[node]

    @property
    def edges(self) -> Iterator[tuple[T, T]]:
        return ((parent, child) for child, parents in self._parents.items() for parent in parents)

    def reachable(self, start: Iterable[T], *, upward: bool, depth: int | None = None) -> set[T]:
        """Nodes reachable from ``start`` (excluded unless reached again), ``depth`` steps at most."""
        step = self._parents if upward else self._children
        seen: set[T] = set()
        frontier = set(start)
        level = 0
        while frontier and (depth is None or level < depth):
            frontier = {n for node in frontier for n in step[node]} - seen
            seen |= frontier
            level += 1
        return seen

    def topological(self, key: Callable[[T], str], nodes: Iterable[T] | None = None) -> list[T]:
        """Kahn's algorithm over ``nodes`` (default all); ties broken by ``key``, so the order is stable.

        Raises ValueError when the nodes hold a cycle.
        """
        chosen = set(self._parents) if nodes is None else set(nodes)
        waiting = {n: len(self._parents[n] & chosen) for n in chosen}
        ready = [(key(n), i, n) for i, n in enumerate(n for n, count in waiting.items() if count == 0)]
        heapq.heapify(ready)
        order: list[T] = []
        tiebreak = len(ready)
        while ready:
            _, _, node = heapq.heappop(ready)
            order.append(node)
            for child in self._children[node]:
                if child in waiting:
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        tiebreak += 1
                        heapq.heappush(ready, (key(child), tiebreak, child))
        if len(order) != len(chosen):
            raise ValueError("graph has a cycle")
        return order

    def to_networkx(self) -> nx.DiGraph[T]:
        import networkx as nx

        graph: nx.DiGraph[T] = nx.DiGraph()
        graph.add_nodes_from(self._parents)
        graph.add_edges_from(self.edges)
        return graph

    def find_cycle(self) -> list[T] | None:
        """One cycle, in order, or None (networkx does the search)."""
        import networkx as nx

        try:
            return [edge[0] for edge in nx.find_cycle(self.to_networkx())]
        except nx.NetworkXNoCycle:
            return None
