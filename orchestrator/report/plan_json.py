"""The plan of ``build --dry-run`` as data: ``--output json`` and ``--output github-matrix``.

Plan format version 1 (docs/reference/report.md)::

    {"version": 1,
     "nodes": [{"label", "platform", "key", "action": "cached" | "remote" | "build", "reason",
                "pull": bool, "image", "engine": URL | null, "parents": [{"label", "platform"}, ...]}, ...],
     "summary": {"nodes", "build", "cached", "remote", "pull"}}

Nodes come parents first, as the plan lists them; parents are sorted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.core.model import Node
from orchestrator.graph.graph import TargetGraph
from orchestrator.pipeline.plan import Action, Plan
from orchestrator.report.matrix import github_matrix, matrix_line

PLAN_VERSION = 1


def plan_parents(graph: TargetGraph, plan: Plan) -> dict[Node, list[Node]]:
    """Each planned node's parents, sorted (all of them are in the plan: it covers the closure)."""
    return {p.node: sorted(graph.nodes.predecessors(p.node)) for p in plan.nodes}


def plan_data(plan: Plan, parents: Mapping[Node, Iterable[Node]]) -> dict[str, Any]:
    return {
        "version": PLAN_VERSION,
        "nodes": [
            {
                "label": str(p.node.label),
                "platform": p.node.platform,
                "key": p.key,
                "action": str(p.action),
                "reason": p.reason,
                "pull": p.pull,
                "image": p.image,
                "engine": p.engine,
                "parents": [
                    {"label": str(parent.label), "platform": parent.platform}
                    for parent in sorted(parents.get(p.node, ()))
                ],
            }
            for p in plan.nodes
        ],
        "summary": {
            "nodes": len(plan.nodes),
            "build": plan.count(Action.BUILD),
            "cached": plan.count(Action.CACHED),
            "remote": plan.count(Action.REMOTE),
            "pull": len(plan.to_pull),
        },
    }


def render_plan(plan: Plan, graph: TargetGraph, output: str) -> str:
    """``json`` (indented) or ``github-matrix`` (one line), without the final newline."""
    parents = plan_parents(graph, plan)
    if output == "github-matrix":
        return matrix_line(github_matrix(plan, parents))
    if output == "json":
        return json.dumps(plan_data(plan, parents), indent=2)
    raise ValueError(f"unknown plan output {output!r}; expected json or github-matrix")
