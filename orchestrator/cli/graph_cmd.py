"""``orchestrator graph``: the family as dot, mermaid or JSON."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from orchestrator.cli.common import emit_json, handle_errors, load_workspace
from orchestrator.graph import render


class GraphFormat(StrEnum):
    dot = "dot"
    mermaid = "mermaid"
    json = "json"


@handle_errors
def graph(
    ctx: typer.Context,
    patterns: Annotated[list[str] | None, typer.Argument(help="Target patterns (default //...)")] = None,
    format: Annotated[
        GraphFormat,
        typer.Option(
            "--output", "-o", "--format", "-f", help="dot or mermaid: a picture; json: the targets and their deps"
        ),
    ] = GraphFormat.dot,
) -> None:
    """The selected targets and what they need, as a picture or as data."""
    graph = load_workspace(ctx).graph
    labels = graph.with_dependencies(graph.select(patterns or []))
    if format is GraphFormat.json:
        emit_json(render.to_json(graph, labels))
    elif format is GraphFormat.mermaid:
        typer.echo(render.to_mermaid(graph, labels), nl=False)
    else:
        typer.echo(render.to_dot(graph, labels), nl=False)
