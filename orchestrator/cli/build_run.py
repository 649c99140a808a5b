"""The bodies of ``build`` and ``explain``, imported only when one of them runs.

The build machinery (scheduler, executor, rich's live display) costs about 100 ms of imports that
queries should not pay; ``build_cmd`` holds the command signatures and calls in here.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from orchestrator.cache.store import Store
from orchestrator.cli.common import (
    Output,
    connecting,
    emit_json,
    engine_spec,
    engine_specs,
    load_workspace,
    options,
    stderr_console,
)
from orchestrator.cli.session import run_on_console, sigterm_stops_cleanly
from orchestrator.core.engines import EngineSpec, engine_url, records_namespace
from orchestrator.engine.local import Engines, closed_at_end, connect
from orchestrator.errors import UsageError
from orchestrator.graph import query
from orchestrator.keys.changes import targets_changed_since
from orchestrator.keys.explain import explain, inputs_lines
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.plan import Action, Plan
from orchestrator.pipeline.run import Request, remote_cache
from orchestrator.report.console import print_summary
from orchestrator.report.json_report import write_report
from orchestrator.report.plan_json import render_plan
from orchestrator.report.summary import build_markdown, write_step_summary
from orchestrator.workspace.loading import LoadedWorkspace


def _print_plan(plan: Plan) -> None:
    """One line per node; with several engines, where it is (cached) or would be built."""
    several = len({p.engine for p in plan.nodes if p.engine}) > 1 or any(
        p.engine for p in plan.nodes if p.action is Action.BUILD
    )
    for planned in plan.nodes:
        word = {Action.CACHED: "CACHED", Action.REMOTE: "REMOTE", Action.BUILD: "BUILD "}[planned.action]
        pull = ", pull" if planned.pull else ""
        on = f" on {planned.engine}" if planned.engine and (several or planned.action is Action.BUILD) else ""
        typer.echo(f"{word} {planned.node.label} {planned.node.platform} {planned.key}  ({planned.reason}{pull}){on}")
    typer.echo(
        f"{plan.count(Action.BUILD)} to build, {plan.count(Action.CACHED)} cached, "
        f"{plan.count(Action.REMOTE)} in the registry cache ({len(plan.to_pull)} to pull)"
    )


if TYPE_CHECKING:
    from orchestrator.supply.signing import SigningKey


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildCommand:
    """What ``orchestrator build`` was asked, as parsed by typer."""

    patterns: list[str] | None
    jobs: int | None
    keep_going: bool
    no_cache: bool
    dry_run: bool
    since: str | None
    report: Path | None
    platforms: tuple[str, ...] = ()
    registry: str | None = None
    require_registry: bool | None = None  # None: WORKSPACE's require_registry
    remote_cache_write: bool = True
    push: bool = False
    load: bool = False
    locked: bool = False
    output: str | None = None  # with --dry-run: text, json or github-matrix
    junit: Path | None = None
    engine_timeout_s: float | None = None
    executor: str | None = None  # auto | buildkit | classic; None: WORKSPACE's executor
    attest: tuple[str, ...] = ()  # --attest, besides WORKSPACE's attestations
    sign_key: SigningKey | None = None  # --sign-key (with --push), loaded before anything runs
    rescan: bool = False  # --rescan: WORKSPACE's scan runs again, cached passes ignored

    def check(self) -> None:
        """Options that contradict each other (exit 2 before anything runs)."""
        if self.push and not self.remote_cache_write:
            raise UsageError("--push uploads images; it cannot go with --no-remote-cache-write")
        if self.output is not None and not self.dry_run:
            raise UsageError("--output is the format of the plan --dry-run prints; add --dry-run (results: --report)")
        if self.push and self.platforms:
            raise UsageError(
                "--push publishes every platform of a target; drop --platform (platforms already in the "
                "registry cache are not built again)"
            )


def run_build(ctx: typer.Context, command: BuildCommand) -> None:
    command.check()
    loaded = load_workspace(ctx)
    specs = engine_specs(ctx, loaded)  # WORKSPACE's engines are known once it is loaded
    # Talking to the engines (importing the SDK, listing images) waits mostly on the daemons: it runs
    # on a thread while the workspace is hashed here.
    with (
        sigterm_stops_cleanly(),
        ThreadPoolExecutor(max_workers=1) as pool,
        closed_at_end(connecting(pool, specs, connect)) as engine_future,
    ):
        _build(ctx, loaded, engine_future, command, specs[0] if specs else None)


def _build(
    ctx: typer.Context,
    loaded: LoadedWorkspace,
    engine_future: Future[Engines],
    command: BuildCommand,
    spec: EngineSpec | None,
) -> None:
    graph = loaded.graph
    selected = graph.select(command.patterns or [])
    if command.since is not None:
        affected = query.affected(graph, targets_changed_since(loaded, command.since))
        selected = [label for label in selected if label in affected]
    cache_dir = loaded.workspace.cache_dir(options(ctx).cache_dir)
    request = Request(
        labels=selected,
        options=BuildOptions(
            jobs=command.jobs or (spec.jobs if spec is not None else None) or os.cpu_count() or 1,
            jobs_given=command.jobs,
            keep_going=command.keep_going,
            no_cache=command.no_cache,
            platforms=command.platforms,
            load=command.load,
            push=command.push,
            engine_timeout_s=command.engine_timeout_s or loaded.workspace.settings.engine_timeout_s,
            executor=command.executor,
            rescan=command.rescan,
        ),
        locked=command.locked,
        dry_run=command.dry_run,
        attest=frozenset(command.attest) | frozenset(loaded.workspace.settings.attestations),
        sign_key=command.sign_key,
    )
    remote = remote_cache(
        loaded, command.registry, write=command.remote_cache_write, push=command.push, required=command.require_registry
    )
    console = stderr_console()
    with Store(cache_dir) as store:
        result = run_on_console(
            console,
            loaded=loaded,
            store=store,
            cache_dir=cache_dir,
            request=request,
            engine=engine_future.result,
            remote=remote,
        )
    if result.summary is None:  # a dry run
        if command.output in (None, "text"):
            _print_plan(result.plan)
        else:
            typer.echo(render_plan(result.plan, graph, command.output))
        return
    summary = result.summary
    print_summary(console, summary, verbose=options(ctx).verbose)
    if command.report is not None:
        write_report(summary, command.report)
    if command.junit is not None:
        from orchestrator.report.junit_build import write_build_junit  # junitparser: only when asked

        write_build_junit(command.junit, summary)
    write_step_summary(lambda: build_markdown(summary), warn=lambda message: typer.echo(f"WARNING {message}", err=True))
    if remote is not None and summary.exit_code == 0:
        remote.check_required()  # a push refused, or the registry gone: ERROR, exit 1
    raise typer.Exit(summary.exit_code)


def run_explain(ctx: typer.Context, target: str, output: Output) -> None:
    loaded = load_workspace(ctx)
    label = loaded.graph.resolve(target)
    cache_dir = loaded.workspace.cache_dir(options(ctx).cache_dir)
    home = records_namespace(engine_url(engine_spec(ctx, loaded)))
    with Store(cache_dir) as store:
        result = explain(loaded, store, label, home)
    if output is Output.json:
        emit_json(result)
        return
    for entry in result:
        typer.echo(f"{entry['label']} {entry['platform']}: {entry['state']} (key {entry['key']})")
        for change in entry.get("changes", []):
            typer.echo(f"  {change['entry']}: {_value(change['old'])} -> {_value(change['new'])}")
    if result:
        typer.echo("\n".join(inputs_lines(result[0]["inputs"])))


def _value(value: str | None) -> str:
    """A manifest value; None is an entry one side does not have (a file added or removed)."""
    return "(absent)" if value is None else value
