"""The bodies of ``build`` and ``explain``, imported only when one of them runs.

The build machinery (scheduler, executor, rich's live display) costs about 100 ms of imports that
queries should not pay; ``build_cmd`` holds the command signatures and calls in here.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer

from orchestrator import query
from orchestrator.build import Build, BuildOptions, Terminated
from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.cli.common import emit_json, load_workspace, options, stderr_console
from orchestrator.emulation import check_emulation
from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.executor.api import Executor, ImageSummary
from orchestrator.hashing import keys_with_store
from orchestrator.inputs import targets_changed_since
from orchestrator.loading import LoadedWorkspace
from orchestrator.locking import check_locked
from orchestrator.manifests import changes, load_manifest
from orchestrator.plan import Action, Plan
from orchestrator.remote_cache import RemoteCache
from orchestrator.report.console import ConsoleDisplay, print_summary
from orchestrator.report.json_report import write_report


@dataclass(frozen=True, slots=True)
class Engine:
    executor: Executor
    images: Mapping[str, ImageSummary]


def _connect() -> Engine:
    """The engine and one listing of its images (importing the docker SDK on the way)."""
    from orchestrator.executor.docker import DockerExecutor

    executor = DockerExecutor()
    executor.ping()
    return Engine(executor=executor, images=executor.references())


def _print_plan(plan: Plan) -> None:
    for planned in plan.nodes:
        word = {Action.CACHED: "CACHED", Action.REMOTE: "REMOTE", Action.BUILD: "BUILD "}[planned.action]
        pull = ", pull" if planned.pull else ""
        typer.echo(f"{word} {planned.node.label} {planned.node.platform} {planned.key}  ({planned.reason}{pull})")
    typer.echo(
        f"{plan.count(Action.BUILD)} to build, {plan.count(Action.CACHED)} cached, "
        f"{plan.count(Action.REMOTE)} in the registry cache ({len(plan.to_pull)} to pull)"
    )


def _remote_cache(loaded: LoadedWorkspace, command: BuildCommand) -> RemoteCache | None:
    address = command.registry or loaded.workspace.settings.registry
    if not address:
        if command.push:
            raise UsageError("--push needs a registry: set registry= in WORKSPACE or pass --registry")
        return None
    from orchestrator.registry import Registry

    return RemoteCache(Registry(address), write=command.remote_cache_write)


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
    remote_cache_write: bool = True
    push: bool = False
    load: bool = False
    locked: bool = False

    def check(self) -> None:
        """Options that contradict each other (exit 2 before anything runs)."""
        if self.push and not self.remote_cache_write:
            raise UsageError("--push uploads images; it cannot go with --no-remote-cache-write")
        if self.push and self.platforms:
            raise UsageError(
                "--push publishes every platform of a target; drop --platform (platforms already in the "
                "registry cache are not built again)"
            )


def run_build(ctx: typer.Context, command: BuildCommand) -> None:
    # Talking to the engine (importing the SDK, listing images) waits mostly on the daemon: it runs
    # on a thread while the workspace is loaded and hashed here.
    with _sigterm_stops_cleanly(), ThreadPoolExecutor(max_workers=1) as pool:
        _build(ctx, pool.submit(_connect), command)


@contextmanager
def _sigterm_stops_cleanly() -> Iterator[None]:
    """SIGTERM (a cancelled CI job) stops running builds like Ctrl-C does: no record, no tag."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _build(ctx: typer.Context, engine_future: Future[Engine], command: BuildCommand) -> None:
    command.check()
    loaded = load_workspace(ctx)
    graph = loaded.graph
    selected = graph.select(command.patterns or [])
    if command.since is not None:
        affected = query.affected(graph, targets_changed_since(loaded, command.since))
        selected = [label for label in selected if label in affected]
    cache_dir = loaded.workspace.cache_dir(options(ctx).cache_dir)
    build_options = BuildOptions(
        jobs=command.jobs or os.cpu_count() or 1,
        keep_going=command.keep_going,
        no_cache=command.no_cache,
        platforms=command.platforms,
        load=command.load,
        push=command.push,
    )
    remote = _remote_cache(loaded, command)
    console = stderr_console()
    display = ConsoleDisplay(console)
    with Store(cache_dir) as store:
        run = Build(loaded, store, cache_dir, None, build_options, display, remote)
        keys = run.compute_keys(selected)
        nodes = [k.node for k in keys]
        if command.locked:
            check_locked(graph, loaded.lock, nodes)
        engine: Engine | None = None
        try:
            engine = engine_future.result()
        except OrchestratorError:
            if not command.dry_run:
                raise
            # a dry run works without a daemon; records are then not verified
        if engine is not None:
            run.executor = engine.executor
        plan = run.plan(selected, keys, images=None if engine is None else engine.images)
        if remote is not None:
            for warning in remote.warnings:
                console.print(f"[yellow]WARNING[/] {warning}", highlight=False)
        for planned in plan.nodes:
            if planned.poisoned:
                console.print(f"[yellow]WARNING[/] {planned.node}: {planned.reason}", highlight=False)
        if command.dry_run:
            _print_plan(plan)
            return
        assert engine is not None
        if engine.executor.is_local():
            check_emulation({p.node.platform for p in plan.to_build}, engine.executor.native_platform())
        try:
            summary = run.run(plan)
        finally:
            display.stop()
    print_summary(console, summary)
    if command.report is not None:
        write_report(summary, command.report)
    raise typer.Exit(summary.exit_code)


def run_explain(ctx: typer.Context, target: str, output: str) -> None:
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
