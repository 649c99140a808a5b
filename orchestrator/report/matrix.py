"""A plan's nodes to build as a GitHub Actions job matrix: one job per (platform, generation).

A node's generation is the number of nodes to build on the longest chain of ancestors above it:
0 when nothing it rests on is to build, else one more than the highest generation among the nodes
to build above it (chains through cached nodes count too). So a job of generation ``g`` needs only
jobs of generations below ``g``, and a workflow can run the generations one after another, each one
spread over its platforms' runners::

    {"include": [{"platform": "linux/amd64", "generation": 0, "targets": "//a:a //b:b",
                  "name": "linux/amd64 gen 0"}]}

Cached nodes and those the registry cache holds are not jobs; an empty plan gives ``{"include": []}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TypedDict

from orchestrator.core.model import Node
from orchestrator.pipeline.plan import Plan


class MatrixEntry(TypedDict):
    platform: str
    generation: int
    targets: str  # space-separated labels, sorted
    name: str


class Matrix(TypedDict):
    include: list[MatrixEntry]


def generations(plan: Plan, parents: Mapping[Node, Iterable[Node]]) -> dict[Node, int]:
    """The generation of every node to build (``plan.nodes`` lists parents before children)."""
    to_build = {p.node for p in plan.to_build}
    above: dict[Node, int] = {}  # nodes to build on the longest chain above a node (any node of the plan)
    for planned in plan.nodes:
        node = planned.node
        above[node] = max(
            (above[p] + (1 if p in to_build else 0) for p in parents.get(node, ()) if p in above),
            default=0,
        )
    return {node: above[node] for node in to_build}


def github_matrix(plan: Plan, parents: Mapping[Node, Iterable[Node]]) -> Matrix:
    """The jobs, ordered by generation then platform; each job's targets sorted."""
    groups: dict[tuple[int, str], set[str]] = {}
    for node, generation in generations(plan, parents).items():
        groups.setdefault((generation, node.platform), set()).add(str(node.label))
    return {
        "include": [
            {
                "platform": platform,
                "generation": generation,
                "targets": " ".join(sorted(labels)),
                "name": f"{platform} gen {generation}",
            }
            for (generation, platform), labels in sorted(groups.items())
        ]
    }


def matrix_line(matrix: Matrix) -> str:
    """One line of JSON, for ``echo "matrix=$(...)" >> "$GITHUB_OUTPUT"``."""
    return json.dumps(matrix)
