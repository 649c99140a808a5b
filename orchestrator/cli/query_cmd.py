"""``orchestrator query deps|rdeps|buildorder|affected``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import Output, emit_labels, handle_errors, load_workspace
from orchestrator.core.imageref import ImageReference
from orchestrator.core.label import looks_like_label
from orchestrator.errors import UnknownTargetError, did_you_mean
from orchestrator.graph import query
from orchestrator.keys.changes import targets_changed_since, targets_owning

app = typer.Typer(help="Questions about the image family (no Docker daemon needed).", no_args_is_help=True)

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="label: one label per line; json: one document")]
DepthOpt = Annotated[int | None, typer.Option("--depth", min=1, help="Only this many steps away (1: direct only)")]


@app.command()
@handle_errors
def deps(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A label or an image reference a target produces")],
    depth: DepthOpt = None,
    output: OutputOpt = Output.label,
) -> None:
    """The targets TARGET is built on (transitively unless --depth)."""
    loaded = load_workspace(ctx)
    emit_labels(query.deps(loaded.graph, loaded.graph.resolve(target), depth), output)


@app.command()
@handle_errors
def rdeps(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(help="A label, an image a target produces, or an external image (debian:bookworm)"),
    ],
    depth: DepthOpt = None,
    output: OutputOpt = Output.label,
) -> None:
    """The targets built on TARGET (transitively unless --depth)."""
    graph = load_workspace(ctx).graph
    if looks_like_label(target):
        found = query.rdeps(graph, graph.resolve(target), depth)
    else:
        ref = ImageReference.parse(target)
        if f"{ref.repository}:{ref.tag}" in graph.owners:
            found = query.rdeps(graph, graph.resolve(target), depth)
        elif query.users_of_external(graph, target):
            found = query.rdeps_of_external(graph, target, depth)
        else:
            known = sorted(graph.owners) + sorted(query.externals(graph))
            raise UnknownTargetError(
                f"no target produces {target!r} and no Dockerfile uses it{did_you_mean(target, known)}"
            )
    emit_labels(found, output)


@app.command()
@handle_errors
def buildorder(
    ctx: typer.Context,
    patterns: Annotated[list[str] | None, typer.Argument(help="Target patterns (default //...)")] = None,
    output: OutputOpt = Output.label,
) -> None:
    """A valid build order of the selected targets and what they need: parents first."""
    graph = load_workspace(ctx).graph
    emit_labels(query.buildorder(graph, graph.select(patterns or [])), output, ordered=True)


@app.command()
@handle_errors
def affected(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(help="The changed files (with --files)")] = None,
    since: Annotated[str | None, typer.Option("--since", help="A git revision: files changed since it")] = None,
    files: Annotated[bool, typer.Option("--files", help="The arguments are changed files")] = False,
    output: OutputOpt = Output.label,
) -> None:
    """Targets whose inputs hold the changed files, plus everything built on them.

    Use --since REF (git: committed, staged, unstaged and untracked changes) or --files F...
    """
    loaded = load_workspace(ctx)
    if (since is None) == (not files):
        raise typer.BadParameter("give exactly one of --since REF or --files F...")
    if since is not None:
        owning = targets_changed_since(loaded, since)
    else:
        owning = targets_owning(loaded, [workspace_relative(loaded.root, p) for p in paths or []])
    emit_labels(query.affected(loaded.graph, owning), output)


def workspace_relative(root: Path, path: str) -> str:
    """A path as given on the command line (relative to here, or to the root) -> workspace-relative."""
    here = Path(path).resolve()
    if here.exists() or Path(path).is_absolute():
        rel = os.path.relpath(here, root)
        if not rel.startswith(".."):
            return Path(rel).as_posix()
    return Path(os.path.normpath(path)).as_posix()


@app.command()
@handle_errors
def outdated(ctx: typer.Context, output: OutputOpt = Output.label) -> None:
    """Locked bases whose digest moved since images.lock, and every target that would rebuild.

    Asks the registries the bases name and the local engine (bases imported here).
    """
    from orchestrator.cli.common import emit_json, engine_spec
    from orchestrator.cli.engine import base_resolver
    from orchestrator.errors import WorkspaceError
    from orchestrator.registry.pins import outdated_bases
    from orchestrator.workspace.lockfile import LOCK_FILE

    loaded = load_workspace(ctx)
    if loaded.lock is None:
        raise WorkspaceError(f"no {LOCK_FILE} in {loaded.root}: run orchestrator lock first")
    with base_resolver(engine_spec(ctx, loaded)) as resolver:
        found = outdated_bases(loaded.graph, loaded.lock, resolver)
    if output is Output.json:
        emit_json(
            [
                {
                    "reference": o.reference,
                    "platform": o.platform,
                    "locked": o.locked,
                    "current": o.current,
                    "error": o.error,
                    "targets": [str(label) for label in o.targets],
                }
                for o in found
            ]
        )
        return
    if not found:
        # on stderr: stdout stays the (empty) list a script reads
        typer.echo(f"every locked base is current ({LOCK_FILE} needs no update)", err=True)
    for o in found:
        now = o.current if o.current is not None else f"cannot resolve ({o.error})"
        typer.echo(f"{o.reference} {o.platform}: {o.locked} -> {now}")
        for label in o.targets:
            typer.echo(f"  {label}")
