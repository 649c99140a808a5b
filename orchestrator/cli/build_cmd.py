"""``orchestrator build`` and ``orchestrator explain``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator import query
from orchestrator.build import Build, BuildOptions
from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.cli.common import emit_json, handle_errors, load_workspace, options
from orchestrator.errors import OrchestratorError
from orchestrator.executor.api import Executor
from orchestrator.hashing import keys_with_store
from orchestrator.inputs import targets_owning
from orchestrator.manifests import changes, load_manifest
from orchestrator.plan import Action, Plan
from orchestrator.vcs import changed_files


def _executor() -> Executor:
    # Imported here: nothing upstream of a real build needs the docker SDK (import cost).
    from orchestrator.executor.docker import DockerExecutor

    executor = DockerExecutor()
    executor.ping()
    return executor


def _print_plan(plan: Plan) -> None:
    for planned in plan.nodes:
        word = "CACHED" if planned.action is Action.CACHED else "BUILD "
        typer.echo(f"{word} {planned.node.label} {planned.node.platform} {planned.key}  ({planned.reason})")
    typer.echo(f"{len(plan.to_build)} to build, {len(plan.nodes) - len(plan.to_build)} cached")


@handle_errors
def build(
    ctx: typer.Context,
    patterns: Annotated[list[str] | None, typer.Argument(help="Target patterns (default //...)")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Builds at once (default: cores)")] = None,
    keep_going: Annotated[
        bool, typer.Option("--keep-going/--fail-fast", help="Go on with independent branches after a failure")
    ] = True,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild every selected node")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (cached or to build, and why)")] = False,
    since: Annotated[str | None, typer.Option("--since", help="Only targets affected since this git revision")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write a JSON report here")] = None,
) -> None:
    """Build the selected targets and everything they need: in order, in parallel, only what changed."""
    loaded = load_workspace(ctx)
    graph = loaded.graph
    selected = graph.select(patterns or [])
    if since is not None:
        affected = query.affected(graph, targets_owning(loaded, changed_files(loaded.root, since)))
        selected = [label for label in selected if label in affected]
    cache_dir = loaded.workspace.cache_dir(options(ctx).cache_dir)
    build_options = BuildOptions(jobs=jobs or os.cpu_count() or 1, keep_going=keep_going, no_cache=no_cache)
    executor: Executor | None = None
    if not dry_run:
        executor = _executor()
    else:
        try:
            executor = _executor()
        except OrchestratorError:  # a dry run works without a daemon; records are then not verified
            executor = None
    console = Console(stderr=True)
    from orchestrator.report.console import ConsoleDisplay, print_summary

    display = ConsoleDisplay(console)
    with Store(cache_dir) as store:
        run = Build(loaded, store, cache_dir, executor, build_options, display)
        plan = run.plan(selected)
        if dry_run:
            _print_plan(plan)
            return
        try:
            summary = run.run(plan)
        finally:
            display.stop()
    print_summary(console, summary)
    if report is not None:
        from orchestrator.report.json_report import write_report

        write_report(summary, report)
    raise typer.Exit(summary.exit_code)


@handle_errors
def explain(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A label or an image reference a target produces")],
    output: Annotated[str, typer.Option("--output", "-o", help="label (text) or json")] = "label",
) -> None:
    """Why TARGET would rebuild: the manifest entries that differ from its last recorded build."""
    loaded = load_workspace(ctx)
    label = loaded.graph.resolve(target)
    cache_dir = loaded.workspace.cache_dir(options(ctx).cache_dir)
    result = []
    with Store(cache_dir) as store:
        _, keys = keys_with_store(store, loaded, loaded.graph.nodes_of(label))
        records = Records(store)
        for node_key in keys:
            last = records.last_key(node_key.node)
            old = load_manifest(store, last) if last else None
            entry: dict[str, object] = {"label": str(label), "platform": node_key.node.platform, "key": node_key.key}
            if last is None:
                entry["state"] = "never built"
            elif last == node_key.key:
                entry["state"] = "up to date" if records.get(last) else "known key, no record"
            elif old is None:
                entry["state"] = "changed (the last build's manifest is not stored)"
            else:
                entry["state"] = "changed"
                entry["last_key"] = last
                entry["changes"] = [
                    {"entry": n, "old": o, "new": v} for n, o, v in changes(store, old, node_key.manifest)
                ]
            result.append(entry)
    if output == "json":
        emit_json(result)
        return
    for entry in result:
        typer.echo(f"{entry['label']} {entry['platform']}: {entry['state']} (key {entry['key']})")
        for change in entry.get("changes", []):  # type: ignore[attr-defined]
            typer.echo(f"  {change['entry']}: {change['old']} -> {change['new']}")
