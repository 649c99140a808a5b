"""``orchestrator hash``: each node's content key, computed without a daemon."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orchestrator.cli.common import Output, emit_json, handle_errors, load_workspace, options
from orchestrator.keys.explain import inputs_lines, inputs_of
from orchestrator.keys.hashing import compute_keys


@handle_errors
def hash_(
    ctx: typer.Context,
    patterns: Annotated[list[str] | None, typer.Argument(help="Target patterns (default //...)")] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="label: LABEL PLATFORM KEY lines; json")
    ] = Output.label,
) -> None:
    """Print LABEL PLATFORM KEY for every node of the selected targets."""
    loaded = load_workspace(ctx)
    selected = loaded.graph.select(patterns or [])
    computer, keys, stats = compute_keys(loaded, selected, cache_dir=options(ctx).cache_dir)
    if options(ctx).verbose:
        typer.echo(f"read {stats.files_hashed} files ({stats.bytes_hashed / 1e6:.1f} MB) to hash them", err=True)
        for label in selected:
            lines = inputs_lines(inputs_of(computer, label))
            typer.echo(f"{label} " + "\n".join(lines), err=True)
    if output is Output.json:
        emit_json([{"label": str(k.node.label), "platform": k.node.platform, "key": k.key} for k in keys])
        return
    sys.stdout.write("".join(f"{k.node.label} {k.node.platform} {k.key}\n" for k in keys))
