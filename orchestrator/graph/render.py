"""The family as a picture (Graphviz dot, Mermaid) or as data (JSON). Pure text, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.core.label import Label
from orchestrator.graph.graph import TargetGraph


def _edges(graph: TargetGraph, labels: set[Label]) -> list[tuple[Label, Label]]:
    return sorted((a, b) for a, b in graph.labels.edges if a in labels and b in labels)


def _externals(graph: TargetGraph, labels: set[Label]) -> list[tuple[str, Label]]:
    found = {
        (ext, node.label) for node, deps in graph.node_deps.items() if node.label in labels for ext in deps.externals
    }
    return sorted(found, key=lambda pair: (pair[0], str(pair[1])))


def to_json(graph: TargetGraph, labels: Iterable[Label]) -> dict[str, Any]:
    chosen = set(labels)
    targets = []
    for label in sorted(chosen):
        target = graph.targets[label]
        targets.append(
            {
                "label": str(label),
                "kind": target.kind,
                "images": list(target.references),
                "platforms": list(graph.platforms_of(label)),
                "deps": sorted(str(p) for p in graph.labels.predecessors(label) if p in chosen),
                "externals": sorted({e for n in graph.nodes_of(label) for e in graph.node_deps[n].externals}),
            }
        )
    return {
        "targets": targets,
        "edges": [[str(a), str(b)] for a, b in _edges(graph, chosen)],
    }


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def to_dot(graph: TargetGraph, labels: Iterable[Label]) -> str:
    chosen = set(labels)
    lines = ["digraph images {", "  rankdir=LR;", "  node [shape=box];"]
    for label in sorted(chosen):
        text = str(label) + "\\n" + ", ".join(graph.targets[label].references)
        lines.append(f"  {_quote(str(label))} [label={_quote(text)}];")
    for ext in sorted({e for e, _ in _externals(graph, chosen)}):
        lines.append(f"  {_quote(ext)} [style=dashed];")
    for a, b in _edges(graph, chosen):
        lines.append(f"  {_quote(str(a))} -> {_quote(str(b))};")
    for ext, label in _externals(graph, chosen):
        lines.append(f"  {_quote(ext)} -> {_quote(str(label))} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: TargetGraph, labels: Iterable[Label]) -> str:
    chosen = set(labels)
    ids: dict[str, str] = {}

    def node_id(name: str) -> str:
        return ids.setdefault(name, f"n{len(ids)}")

    lines = ["flowchart TB"]
    for label in sorted(chosen):
        lines.append(f'  {node_id(str(label))}["{label}"]')
    for ext in sorted({e for e, _ in _externals(graph, chosen)}):
        lines.append(f'  {node_id(ext)}(["{ext}"])')
    for a, b in _edges(graph, chosen):
        lines.append(f"  {node_id(str(a))} --> {node_id(str(b))}")
    for ext, label in _externals(graph, chosen):
        lines.append(f"  {node_id(ext)} -.-> {node_id(str(label))}")
    return "\n".join(lines) + "\n"
