"""The small DAG agrees with networkx, the project's reference graph library."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.dag import Dag


@st.composite
def edge_lists(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    count = draw(st.integers(1, 30))
    edges = draw(st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)), max_size=80))
    return count, edges


def build(count: int, edges: list[tuple[int, int]]) -> tuple[Dag[int], nx.DiGraph[int]]:
    dag: Dag[int] = Dag()
    reference: nx.DiGraph[int] = nx.DiGraph()
    for n in range(count):
        dag.add_node(n)
        reference.add_node(n)
    for a, b in edges:
        dag.add_edge(a, b)
        reference.add_edge(a, b)
    return dag, reference


@settings(max_examples=300, deadline=None)
@given(edge_lists())
def test_order_matches_networkx_lexicographical_sort_or_both_find_a_cycle(
    graph: tuple[int, list[tuple[int, int]]],
) -> None:
    dag, reference = build(*graph)
    if nx.is_directed_acyclic_graph(reference):
        assert dag.topological(str) == list(nx.lexicographical_topological_sort(reference, key=str))
        assert dag.find_cycle() is None
    else:
        cycle = dag.find_cycle()
        assert cycle is not None
        for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
            assert reference.has_edge(a, b)


@settings(max_examples=200, deadline=None)
@given(edge_lists(), st.integers(0, 29), st.one_of(st.none(), st.integers(1, 4)))
def test_reachable_matches_networkx(graph: tuple[int, list[tuple[int, int]]], start: int, depth: int | None) -> None:
    dag, reference = build(*graph)
    start %= graph[0]
    lengths = nx.single_source_shortest_path_length(reference, start, cutoff=depth)
    expected = {n for n, d in lengths.items() if d > 0}
    assert dag.reachable([start], upward=False, depth=depth) - {start} == expected
    upstream = nx.single_source_shortest_path_length(reference.reverse(), start, cutoff=depth)
    assert dag.reachable([start], upward=True, depth=depth) - {start} == {n for n, d in upstream.items() if d > 0}
