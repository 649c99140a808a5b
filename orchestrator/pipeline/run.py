"""The build pipeline: the ONE function ``build`` and ``test`` call, and the Pipeline it drives.

    keys -> (lock check) -> engines -> plan -> warnings -> runnable? -> execute -> (rescan) -> promote -> summary
    -> (attestations)

``run`` does all of it for a selection and returns the plan and what came of it; the CLI only
parses, calls it, prints and exits. ``Pipeline`` holds one invocation's state: it gathers what the
cache, the engine and the registry hold, hands that to the pure planner (``plan.py``), runs the plan
(``execute.py``), builds a second time what the registry failed to deliver, and promotes
(``promote.py``). With several engines (``fleet.py``) the plan counts a node cached when any engine
holds it, work is placed as it becomes ready (``placement.py``), and a dry run shows the placement
a run would make (``placement.simulate``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cache.records import BuildRecord, Records
from orchestrator.cache.store import Store
from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.core.platforms import normalize
from orchestrator.engine.api import BuilderChoice, DaemonUnavailable, Executor, ImageSummary, TransferFailed
from orchestrator.engine.local import Engine, Engines
from orchestrator.errors import NothingMatchedError, OrchestratorError, UsageError
from orchestrator.keys.hashing import keys_with_store
from orchestrator.keys.keys import KeyComputer, NodeKey
from orchestrator.keys.manifests import changes, describe, load_manifest
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.attest import Supply, attest
from orchestrator.pipeline.builder import check_builds
from orchestrator.pipeline.execute import Executed, Execution, Listener
from orchestrator.pipeline.fleet import Fleet, check_runnable, check_several, member_of
from orchestrator.pipeline.hermetic import (
    check_base_platforms,
    check_bases_found,
    check_hermetic,
    check_hermetic_mounts,
    check_pinned_images,
)
from orchestrator.pipeline.options import BuildOptions, Terminated
from orchestrator.pipeline.placement import simulate
from orchestrator.pipeline.plan import Action, Known, Plan, make_plan, merge_engines, use_remote
from orchestrator.pipeline.promote import Holder, promote, publish_selected
from orchestrator.pipeline.scan import ScanGate, rescan
from orchestrator.pipeline.summary import (
    BuildSummary,
    ExecutorUse,
    NodeReport,
    NodeStatus,
    all_reports,
    prefer_work_done,
)
from orchestrator.registry.cache import Level, Notice, RemoteCache
from orchestrator.registry.client import Registry
from orchestrator.registry.pins import Resolver, check_locked
from orchestrator.workspace.loading import LoadedWorkspace
from orchestrator.workspace.provenance import workspace_labels

if TYPE_CHECKING:
    from orchestrator.supply.signing import SigningKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What ``build`` or ``test`` asks of the pipeline."""

    labels: list[Label]
    options: BuildOptions
    locked: bool = False  # images.lock must pin every external base used, and nothing else
    dry_run: bool = False  # plan only (works without an engine)
    commands_on: frozenset[str] = frozenset()  # platforms that will run commands afterwards (image tests)
    attest: frozenset[str] = frozenset()  # to make after the build (``sbom``, ``provenance``); no key input
    sign_key: SigningKey | None = None  # with options.push: sign what is pushed (``attest.py``)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    plan: Plan
    summary: BuildSummary | None  # None for a dry run


def run(
    *,
    loaded: LoadedWorkspace,
    store: Store,
    cache_dir: Path,
    request: Request,
    engine: Callable[[], Engine | Engines],
    listener: Listener | None = None,
    remote: RemoteCache | None = None,
    warn: Callable[[Notice], None] = lambda notice: None,
) -> Result:
    """Build ``request.labels`` and everything they need (or, with ``dry_run``, only plan it).

    ``engine`` is called once the keys are computed (a future's ``result``: connecting runs beside
    the hashing); a dry run goes on without one when it raises. Several engines need a writable
    registry cache (UsageError otherwise); those that did not answer are a WARNING each.
    ``request.attest`` (``sbom``, ``provenance``) makes and caches them for each node, reading the
    engine holding it, after the build; with ``--push`` they are attached to the pushed images, and
    ``request.sign_key`` signs those (``attest.py``; a failure is one of the summary's warnings). WORKSPACE's
    ``scan`` runs as part of each node built (``scan.py``). ``warn`` receives the plan's
    notices (WARNING or ERROR), the builder's fallback (once, before anything is built), then the ERROR ones
    of the run (its warnings are in the summary).
    """
    pipeline = Pipeline(loaded, store, cache_dir, None, request.options, listener, remote, warn=warn)
    keys = pipeline.compute_keys(request.labels)
    if request.locked:
        check_locked(loaded.graph, loaded.lock, [k.node for k in keys])
    connected: Engines | None = None
    try:
        connected = Engines.of(engine())
    except OrchestratorError:
        if not request.dry_run:
            raise
        # a dry run works without a daemon; records are then not verified
    if connected is not None:
        check_several(connected, remote)
        for each in connected.connected:
            each.journal_builds(cache_dir)
        pipeline.use_engines(connected)
        for spec, error in connected.unreachable:
            warn(Notice(message=f"engine {spec.url} does not answer; not used this run: {error}"))
    plan = pipeline.plan(request.labels, keys, images=None if connected is None else connected.home.images)
    for notice in plan_warnings(remote, plan):
        warn(notice)
    if request.dry_run:
        return Result(plan=pipeline.placed(plan) if connected is not None else plan, summary=None)
    assert connected is not None
    pipeline.check_bases(plan)
    pipeline.check_scanner(plan)
    check_runnable(pipeline.fleet, {p.node.platform for p in plan.to_build} | request.commands_on)
    shown = len(remote.notices) if remote is not None else 0
    summary = pipeline.run(plan)
    if request.attest or request.sign_key is not None:
        supply = Supply(loaded=loaded, computer=pipeline.computer, remote=remote, sign_key=request.sign_key)
        summary = attest(summary, store, pipeline.executor_of, request.attest, supply)
    result = Result(plan=plan, summary=summary)
    for notice in remote.notices[shown:] if remote is not None else ():
        if notice.level is Level.ERROR:  # a push refused: not a warning, so not in the summary's
            warn(notice)
    return result


def plan_warnings(remote: RemoteCache | None, plan: Plan) -> list[Notice]:
    """The registry's notices so far (it was unreachable, or refused us) and every poisoned content tag."""
    notices = remote.notices if remote is not None else []
    notices += [Notice(message=f"{p.node}: {p.reason}") for p in plan.nodes if p.poisoned]
    return notices


def remote_cache(
    loaded: LoadedWorkspace,
    registry: str | None,
    *,
    write: bool = True,
    push: bool = False,
    required: bool | None = None,
) -> RemoteCache | None:
    """The registry cache of ``--registry``, else WORKSPACE's ``registry=``; None without either.

    ``required`` (``--require-registry``; None: WORKSPACE's ``require_registry``) makes an unusable
    registry fail the build.
    """
    settings = loaded.workspace.settings
    address = registry or settings.registry
    required = settings.require_registry if required is None else required
    if not address:
        if push:
            raise UsageError("--push needs a registry: set registry= in WORKSPACE or pass --registry")
        if required:
            raise UsageError(
                "a registry cache is required (--require-registry or WORKSPACE's require_registry) but none is "
                "set: set registry= in WORKSPACE or pass --registry"
            )
        return None
    from orchestrator.registry.client import Registry

    return RemoteCache(Registry(address), write=write, required=required)


class Pipeline:
    """One build invocation: keys, plan, execution, promotion (see the module docstring)."""

    def __init__(
        self,
        loaded: LoadedWorkspace,
        store: Store,
        cache_dir: Path,
        executor: Executor | None,
        options: BuildOptions,
        listener: Listener | None = None,
        remote: RemoteCache | None = None,
        base_registries: Callable[[str], Registry] = Registry,
        *,
        warn: Callable[[Notice], None] = lambda notice: None,
    ) -> None:
        self.loaded = loaded
        self.graph = loaded.graph
        self.store = store
        self.records = Records(store)
        self.cache_dir = cache_dir
        self.executor = executor
        self.options = options
        self.listener = listener
        self.remote = remote
        self.base_registries = base_registries  # where an unpinned base the engine lacks is looked for
        self.absent_bases: set[str] = set()  # unpinned bases of the nodes to build that the engine lacks
        self.computer: KeyComputer | None = None
        self.distrusted: set[Node] = set()  # nodes whose registry copy failed to pull or was wrong
        self.warn = warn  # the builder's fallback warning goes here
        self.builder: BuilderChoice | None = None  # selected before the first build; None: nothing built yet
        self._fleet: Fleet | None = None  # the engines (use_engines), else one made of ``executor`` when first needed
        self._listed = False  # the engines were listed for a plan: a later plan lists them again
        self._new_key_reasons: dict[str, str] = {}
        self._keys: list[NodeKey] = []

    def use_engines(self, engines: Engines) -> None:
        """Build on ``engines`` (their home engine's executor becomes ``executor``)."""
        # With several engines, one without jobs of its own gets the cores here, not the home engine's jobs.
        default_jobs = (os.cpu_count() or 1) if engines.count > 1 else self.options.jobs
        members = [
            member_of(
                engine.executor, engine.images, engine.spec, self.records, self.options, default_jobs=default_jobs
            )
            for engine in engines.connected
        ]
        self._fleet = Fleet(members)
        self.executor = self._fleet.home.executor

    @property
    def fleet(self) -> Fleet:
        """The engines built on (one made of ``executor`` when ``use_engines`` was not called)."""
        if self._fleet is None:
            assert self.executor is not None
            self._fleet = Fleet(
                [member_of(self.executor, None, None, self.records, self.options, default_jobs=self.options.jobs)]
            )
        return self._fleet

    def executor_of(self, report: NodeReport) -> Executor:
        """The engine holding ``report``'s image (the home engine when not known)."""
        return self.fleet.holding(report.engine).executor

    def _tls_dirs(self) -> dict[str, str]:
        """Engine URL -> its TLS directory, for the scanner (scan.py)."""
        return {m.url: m.tls for m in self.fleet.members if m.tls} if self.executor is not None else {}

    def selected_nodes(self, labels: Iterable[Label]) -> list[Node]:
        """The selection's nodes (only ``options.platforms``' if given)."""
        wanted = {normalize(p) for p in self.options.platforms}
        nodes = [n for label in labels for n in self.graph.nodes_of(label) if not wanted or n.platform in wanted]
        if not nodes:
            shown = ", ".join(sorted(wanted))
            raise NothingMatchedError(f"no selected target is built for {shown}")
        return nodes

    def compute_keys(self, labels: list[Label]) -> list[NodeKey]:
        """Keys of the selection and everything it needs (no engine needed)."""
        closure = self.graph.nodes_with_ancestors(self.selected_nodes(labels))
        self.computer, keys = keys_with_store(self.store, self.loaded, self.graph.topological_nodes(closure))
        self._keys = keys
        return keys

    def plan(
        self,
        labels: list[Label],
        keys: list[NodeKey] | None = None,
        *,
        images: Mapping[str, ImageSummary] | None = None,
    ) -> Plan:
        """Cached, in the registry or to build, for every node of the selection's closure.

        ``images``: one listing of the engine's images (taken here when there is an engine and none
        is given).
        """
        if keys is None:
            keys = self.compute_keys(labels)
        self._keys = keys
        settings = self.loaded.workspace.settings
        check_hermetic(self.graph, settings, self.loaded.lock, [k.node for k in keys])
        check_hermetic_mounts(self.graph, settings, self.loaded.root, [k.node for k in keys])
        closure = self.graph.with_dependencies(labels)
        repositories = {label: self.graph.targets[label].repository for label in closure}
        order = self.graph.topological_nodes(k.node for k in keys)

        def plan_on(records: Records, listing: Mapping[str, ImageSummary] | None) -> Plan:
            return make_plan(
                keys=keys,
                order=order,
                repositories=repositories,
                selected=frozenset(labels),
                known=self._known(keys, records),
                images=listing,
                no_cache=self.options.no_cache,
            )

        if self.executor is None:
            plan = plan_on(self.records, None)
        else:
            plans = []
            for member in self.fleet.live():
                if member is self.fleet.home and images is not None:
                    member.images = images
                elif self._listed or not member.images:
                    member.images = member.executor.references()
                plans.append((member.url, plan_on(member.records, member.images)))
            self._listed = True
            plan = merge_engines(plans)
        if self.remote is not None:
            found = self.remote.lookup(plan.nodes, {p.node: repositories[p.node.label] for p in plan.nodes})
            for node in self.distrusted:
                found.pop(node, None)
            parents = {p.node: [ref.node for ref in self.graph.node_deps[p.node].parents] for p in plan.nodes}
            load = self.selected_nodes(labels) if self.options.load else ()
            plan = use_remote(plan, found, parents, load=load)
        if self.executor is not None:
            to_build = [p.node for p in plan.to_build]
            check_pinned_images(self.graph, self.loaded.lock, to_build, self.executor)
            self.absent_bases = check_base_platforms(
                self.graph, self.loaded.lock, to_build, self.executor, self.loaded.root
            )
        return plan

    def check_bases(self, plan: Plan) -> None:
        """BaseNotFound for an unpinned base of a node to build found nowhere (before anything is built).

        Only the nodes to build need their bases: a cached node, or one the registry cache holds,
        needs none. Looked for only among what the last :meth:`plan` found missing from the engine.
        Not part of :meth:`plan`: a dry run plans on a machine that may never build.
        """
        if not self.absent_bases:
            return
        resolver = Resolver(self.executor, registry_factory=self.base_registries)
        try:
            check_bases_found(
                self.graph, self.loaded.lock, [p.node for p in plan.to_build], self.absent_bases, resolver
            )
        finally:
            resolver.close()

    @property
    def requested_builder(self) -> str:
        """``--executor``, else WORKSPACE's ``executor`` (auto by default)."""
        return self.options.executor or self.loaded.workspace.settings.executor

    @property
    def scan_gate(self) -> ScanGate | None:
        """WORKSPACE's scan gate (``scan.py``), or None."""
        settings = self.loaded.workspace.settings
        return ScanGate.of(
            settings, self.store, root=self.loaded.root, rescan=self.options.rescan, tls_dirs=self._tls_dirs()
        )

    def check_scanner(self, plan: Plan) -> None:
        """ScannerMissing (exit 2) before anything is built when there is something to scan and no scanner."""
        gate = self.scan_gate
        if gate is not None and (plan.to_build or self.options.rescan):
            gate.check()

    def prepare_builds(self, plan: Plan) -> None:
        """Select the builder (once, and only when something is to be built) and check what the builds need.

        Raises BuildKitUnavailable (``--executor buildkit`` where BuildKit cannot be reached) or
        BuilderError (secrets, ssh or a ``# syntax`` frontend the builds need and lack) before anything
        is built; ``auto`` falling back to the classic builder is one WARNING.
        """
        assert self.executor is not None
        nodes = [p.node for p in plan.to_build]
        if not nodes:
            return
        if self.builder is None:
            self.builder = self.executor.select_builder(self.requested_builder)
            if self.builder.warning:
                self.warn(Notice(message=self.builder.warning))
            for member in self.fleet.live()[1:]:  # each engine reaches its own BuildKit
                try:
                    other = member.executor.select_builder(self.requested_builder)
                except DaemonUnavailable as exc:  # gone since it was listed: left for the rest of the run
                    self.fleet.mark_down(member, str(exc))
                    self.warn(Notice(message=f"engine {member.url} went down; not used this run: {exc}"))
                    continue
                if other.warning:
                    self.warn(Notice(message=f"{member.url}: {other.warning}"))
        check_builds(self.graph, self.loaded.root, nodes, self.builder, self.requested_builder, self.executor)

    def _known(self, keys: list[NodeKey], records: Records) -> Known:
        """What one engine's records hold for ``keys``, and why a key without one is new."""
        found: dict[str, BuildRecord] = {}
        reasons = {}
        for node_key in keys:
            record = records.get(node_key.key)
            if record is not None:
                found[node_key.key] = record
                continue
            if node_key.key not in self._new_key_reasons:
                self._new_key_reasons[node_key.key] = self._why_new_key(node_key)
            reasons[node_key.key] = self._new_key_reasons[node_key.key]
        return Known(records=found, new_key_reasons=reasons)

    def placed(self, plan: Plan) -> Plan:
        """``plan`` with the engine each node to build would go to (a dry run's view; several engines only)."""
        if not self.fleet.several:
            return plan
        to_build = [p.node for p in plan.to_build]
        parents = {n: list(self.graph.nodes.predecessors(n)) for n in to_build}
        durations = {}
        for node in to_build:
            last = self.fleet.last_duration(node)
            durations[node] = last if last is not None else 1.0
        held = {p.node: frozenset(url for url, _ in p.held) for p in plan.nodes if p.held}
        where = simulate(
            to_build,
            parents,
            lambda node: node.platform,
            durations,
            [m.slots() for m in self.fleet.live()],
            held=held,
            priority=scheduler.critical_path_priority(to_build, parents, durations),
        )
        return replace(plan, nodes=tuple(replace(p, engine=where.get(p.node, p.engine)) for p in plan.nodes))

    def _why_new_key(self, node_key: NodeKey) -> str:
        last = self.records.last_key(node_key.node)
        if last is None:
            return "never built"
        old = load_manifest(self.store, last)
        if old is None:
            return "new key (the previous manifest is not stored)"
        found = changes(self.store, old, node_key.manifest)
        shown = ", ".join(describe(c) for c in found[:3])
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        return f"{shown}{more}" if found else "new key"

    def run(self, plan: Plan) -> BuildSummary:
        """Execute ``plan``; what the registry failed to deliver is built here in a second pass."""
        assert self.executor is not None and self.computer is not None
        self.prepare_builds(plan)
        gate = self.scan_gate
        execution = Execution(
            loaded=self.loaded,
            fleet=self.fleet,
            cache_dir=self.cache_dir,
            computer=self.computer,
            options=self.options,
            base_labels=workspace_labels(self.loaded.root),
            listener=self.listener,
            remote=self.remote,
            scan=gate,
        )
        executed = execution.execute(plan)
        first_pass: Mapping[Node, NodeReport] = {}
        failed_pulls = [] if executed.stop is not None else _failed_pulls(plan, executed)
        if failed_pulls and self.remote is not None:
            # A registry copy that failed to pull, or turned out wrong once pulled, is built here
            # instead: plan again without trusting those copies (what was done is now cached).
            first_pass = all_reports(plan, execution.done, executed.outcomes)
            self.distrusted.update(failed_pulls)
            for node in failed_pulls:
                self.remote.warn(f"{node}: {executed.outcomes[node].error}; building it here instead")
            plan = self.plan(sorted(plan.selected), self._keys)
            self.prepare_builds(plan)
            executed = execution.execute(plan)
        interrupted = executed.stop is not None
        if self.options.load and not interrupted:
            execution.load_home(self.selected_nodes(sorted(plan.selected)))
        second = all_reports(plan, execution.done, executed.outcomes)
        reports = {n: prefer_work_done(first_pass.get(n), report) for n, report in second.items()}
        reports = self._with_builders(plan, reports, execution)
        if gate is not None and gate.rescan and not interrupted:  # before promotion: a failed rescan moves no tag
            reports = rescan(gate, plan, reports, self._engine_url, cache_dir=self.cache_dir, jobs=self.options.jobs)
        holders = partial(self._holders, execution)
        promoted = () if interrupted else promote(self.graph, plan, reports, holders)
        published = None
        if self.options.push and not interrupted:
            published = publish_selected(self.graph, self.remote, plan, reports, execution.in_registry)
        stop = executed.stop
        return BuildSummary(
            plan=plan,
            reports=tuple(reports[p.node] for p in plan.nodes),
            promoted=promoted,
            interrupted=interrupted,
            terminated=isinstance(stop, Terminated) or isinstance(getattr(stop, "__cause__", None), Terminated),
            warnings=(tuple(self.remote.warnings) if self.remote is not None else ()) + tuple(execution.notices),
            published=published,
            executor=ExecutorUse(
                requested=self.requested_builder,
                used=None if self.builder is None else self.builder.name,
                detail=None if self.builder is None else self.builder.detail,
            ),
        )

    def _engine_url(self, report: NodeReport) -> str:
        """The URL of the engine holding ``report``'s image (the home engine when not known)."""
        return self.fleet.holding(report.engine).url

    def _holders(self, execution: Execution, node: Node) -> list[Holder]:
        """The live engines holding ``node``'s image, the home engine first."""
        held = execution.holdings.holders(node)
        members = [m for m in self.fleet.live() if m.url in held]
        return [Holder(executor=m.executor, image_id=held[m.url], images=m.images) for m in members]

    def _with_builders(
        self, plan: Plan, reports: Mapping[Node, NodeReport], execution: Execution
    ) -> dict[Node, NodeReport]:
        """Each node with the engine that built, pulled or holds it (URL), and its builder if built here
        (or its build failed here)."""
        by_node = plan.by_node()
        updated = {}
        for node, report in reports.items():
            engine = execution.engine_of.get(node)
            if report.status is NodeStatus.BUILT and node in execution.builders:
                report = replace(report, builder=execution.builders[node], engine=engine)
            elif (
                report.status is NodeStatus.FAILED and by_node[node].action is Action.BUILD and self.builder is not None
            ):
                report = replace(report, builder=self.builder.name, engine=engine or self.fleet.home.url)
            elif report.status in (NodeStatus.CACHED, NodeStatus.PULLED) and engine is not None:
                report = replace(report, engine=engine)
            updated[node] = report
        return updated


def _failed_pulls(plan: Plan, executed: Executed) -> list[Node]:
    """Nodes whose registry copy could not be pulled or was wrong once pulled."""
    outcomes = executed.outcomes
    return [
        p.node
        for p in plan.to_pull
        if p.node in outcomes
        and outcomes[p.node].status is scheduler.Status.FAILED
        and isinstance(outcomes[p.node].error, TransferFailed)
    ]
