"""After the run: human tags move only for selected targets whose whole closure succeeded.

Locally (``promote``), each such target's tags point at its host-platform image; with ``--push``
(``publish_selected``), its tags are made in the registry from the content tags already there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.core.platforms import host_platform
from orchestrator.engine.api import Executor, ImageSummary
from orchestrator.graph.graph import TargetGraph
from orchestrator.pipeline.plan import Plan
from orchestrator.pipeline.summary import OK_STATUSES, NodeReport
from orchestrator.registry.cache import RemoteCache
from orchestrator.registry.client import RemoteImage
from orchestrator.registry.publish import Published, publish


def succeeded(graph: TargetGraph, plan: Plan, reports: Mapping[Node, NodeReport]) -> list[Label]:
    """Selected targets whose planned nodes, and every node those rest on, succeeded."""
    good = []
    for label in sorted(plan.selected):
        nodes = [n for n in graph.nodes_of(label) if n in reports]
        closure = graph.nodes_with_ancestors(nodes)
        if nodes and all(reports[n].status in OK_STATUSES for n in closure if n in reports):
            good.append(label)
    return good


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    """An engine holding a node's image: the human tags move there."""

    executor: Executor
    image_id: str  # the node's image on that engine
    images: Mapping[str, ImageSummary] | None  # its listing when planned: tags already right are left alone


def promote(
    graph: TargetGraph, plan: Plan, reports: Mapping[Node, NodeReport], holders: Callable[[Node], Sequence[Holder]]
) -> tuple[str, ...]:
    """Tag ``repository:tag`` for each selected target whose nodes and their ancestors all succeeded, on
    every engine holding its host-platform image (``holders``).

    Returns the references that moved (those already pointing at the right image are left alone).
    """
    promoted: dict[str, None] = {}
    for label in succeeded(graph, plan, reports):
        node = _local_node([n for n in graph.nodes_of(label) if n in reports])
        if node is None or reports[node].image_id is None:
            continue  # not the host's platform, or only in the registry (--load pulls it)
        target = graph.targets[label]
        for holder in holders(node):
            for tag in target.tags:
                reference = f"{target.repository}:{tag}"
                current = (holder.images or {}).get(reference)
                if current is None or current.image_id != holder.image_id:
                    holder.executor.tag(holder.image_id, target.repository, tag)
                    promoted[reference] = None
    return tuple(promoted)


def publish_selected(
    graph: TargetGraph,
    remote: RemoteCache | None,
    plan: Plan,
    reports: Mapping[Node, NodeReport],
    in_registry: Mapping[Node, RemoteImage],
) -> Published:
    """``--push``: the human tags of every selected target whose closure succeeded, in the registry."""
    if remote is None:
        return Published(pushed=(), errors=("--push needs a registry: registry= in WORKSPACE or --registry",))
    if remote.down is not None:
        return Published(pushed=(), errors=(f"nothing pushed: the registry is unavailable ({remote.down})",))
    targets = [(graph.targets[label], graph.nodes_of(label)) for label in succeeded(graph, plan, reports)]
    return publish(remote.registry, targets, in_registry)


def _local_node(nodes: list[Node]) -> Node | None:
    """The node whose image the local human tags point at: the host's platform, or the only one."""
    if len(nodes) == 1:
        return nodes[0]
    host = host_platform()
    return next((n for n in nodes if n.platform == host), None)
