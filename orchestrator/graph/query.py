"""Questions about the family, answered from the TargetGraph alone (no daemon, no cache)."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.core.dag import Dag
from orchestrator.core.imageref import ImageReference
from orchestrator.core.label import Label
from orchestrator.graph.graph import TargetGraph


def _within(graph: Dag[Label], start: Iterable[Label], depth: int | None, *, reverse: bool) -> set[Label]:
    """Labels reachable from ``start`` in at most ``depth`` steps (None: any), downstream if ``reverse``."""
    return graph.reachable(start, upward=not reverse, depth=depth)


def deps(graph: TargetGraph, label: Label, depth: int | None = None) -> set[Label]:
    """What ``label`` is built on, transitively unless ``depth``."""
    return _within(graph.labels, [label], depth, reverse=False)


def rdeps(graph: TargetGraph, label: Label, depth: int | None = None) -> set[Label]:
    """What is built on ``label``, transitively unless ``depth``."""
    return _within(graph.labels, [label], depth, reverse=True)


def users_of_external(graph: TargetGraph, reference: str) -> set[Label]:
    """Targets whose Dockerfile names the external image ``reference`` directly."""
    wanted = ImageReference.parse(reference).familiar
    return {
        node.label
        for node, node_deps in graph.node_deps.items()
        if any(ImageReference.parse(ext).familiar == wanted for ext in node_deps.externals)
    }


def externals(graph: TargetGraph) -> set[str]:
    return {ext for node_deps in graph.node_deps.values() for ext in node_deps.externals}


def rdeps_of_external(graph: TargetGraph, reference: str, depth: int | None = None) -> set[Label]:
    direct = users_of_external(graph, reference)
    if depth is not None and depth <= 1:
        return direct if depth == 1 else set()
    return direct | _within(graph.labels, direct, None if depth is None else depth - 1, reverse=True)


def buildorder(graph: TargetGraph, selected: Iterable[Label]) -> list[Label]:
    """The selected targets and everything they need, parents before children."""
    return graph.topological_labels(graph.with_dependencies(selected))


def affected(graph: TargetGraph, direct: Iterable[Label]) -> set[Label]:
    """``direct`` plus everything built on them."""
    hit = set(direct)
    return hit | _within(graph.labels, hit, None, reverse=True)
