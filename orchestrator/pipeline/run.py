"""The build pipeline: the ONE function ``build`` and ``test`` call, and the Pipeline it drives.

    keys -> (lock check) -> engine -> plan -> warnings -> runnable? -> execute -> promote -> summary -> (attestations)

``run`` does all of it for a selection and returns the plan and what came of it; the CLI only
parses, calls it, prints and exits. ``Pipeline`` holds one invocation's state: it gathers what the
cache, the engine and the registry hold, hands that to the pure planner (``plan.py``), runs the plan
(``execute.py``), builds a second time what the registry failed to deliver, and promotes
(``promote.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.core.platforms import normalize
from orchestrator.engine.api import BuilderChoice, Executor, ImageSummary, TransferFailed
from orchestrator.engine.emulation import check_emulation
from orchestrator.engine.local import Engine
from orchestrator.errors import NothingMatchedError, OrchestratorError, UsageError
from orchestrator.keys.hashing import keys_with_store
from orchestrator.keys.keys import KeyComputer, NodeKey
from orchestrator.keys.manifests import changes, describe, load_manifest
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.attest import attest
from orchestrator.pipeline.builder import check_builds
from orchestrator.pipeline.execute import Executed, Execution, Listener
from orchestrator.pipeline.hermetic import (
    check_base_platforms,
    check_bases_found,
    check_hermetic,
    check_hermetic_mounts,
    check_pinned_images,
)
from orchestrator.pipeline.options import BuildOptions, Terminated
from orchestrator.pipeline.plan import Action, Known, Plan, make_plan, use_remote
from orchestrator.pipeline.promote import promote, publish_selected
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What ``build`` or ``test`` asks of the pipeline."""

    labels: list[Label]
    options: BuildOptions
    locked: bool = False  # images.lock must pin every external base used, and nothing else
    dry_run: bool = False  # plan only (works without an engine)
    commands_on: frozenset[str] = frozenset()  # platforms that will run commands afterwards (image tests)
    attest: frozenset[str] = frozenset()  # attestations to make after the build (``sbom``); no key depends on it


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
    engine: Callable[[], Engine],
    listener: Listener | None = None,
    remote: RemoteCache | None = None,
    warn: Callable[[Notice], None] = lambda notice: None,
) -> Result:
    """Build ``request.labels`` and everything they need (or, with ``dry_run``, only plan it).

    ``engine`` is called once the keys are computed (a future's ``result``: connecting runs beside
    the hashing); a dry run goes on without one when it raises. ``request.attest`` (``sbom``) makes
    and caches the SBOM of each node in the engine after the build (``attest.py``; a failure is one
    of the summary's warnings). ``warn`` receives the plan's notices
    (WARNING or ERROR), the builder's fallback (once, before anything is built), then the ERROR ones
    of the run (its warnings are in the summary).
    """
    pipeline = Pipeline(loaded, store, cache_dir, None, request.options, listener, remote, warn=warn)
    keys = pipeline.compute_keys(request.labels)
    if request.locked:
        check_locked(loaded.graph, loaded.lock, [k.node for k in keys])
    connected: Engine | None = None
    try:
        connected = engine()
    except OrchestratorError:
        if not request.dry_run:
            raise
        # a dry run works without a daemon; records are then not verified
    if connected is not None:
        connected.journal_builds(cache_dir)
        pipeline.executor = connected.executor
    plan = pipeline.plan(request.labels, keys, images=None if connected is None else connected.images)
    for notice in plan_warnings(remote, plan):
        warn(notice)
    if request.dry_run:
        return Result(plan=plan, summary=None)
    assert connected is not None
    pipeline.check_bases(plan)
    check_runnable(connected, {p.node.platform for p in plan.to_build} | request.commands_on)
    shown = len(remote.notices) if remote is not None else 0
    summary = pipeline.run(plan)
    if request.attest:
        summary = attest(summary, store, connected.executor, request.attest)
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


def check_runnable(engine: Engine, platforms: Iterable[str]) -> None:
    """Every platform that will run here has an emulator (checked only for an engine on this machine)."""
    wanted = set(platforms) - set(engine.native_platforms)  # declared native: runs without QEMU
    if wanted and engine.executor.is_local():
        check_emulation(wanted, engine.executor.native_platform())


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
        self._keys: list[NodeKey] = []

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
        if images is None and self.executor is not None:
            images = self.executor.references()
        plan = make_plan(
            keys=keys,
            order=self.graph.topological_nodes(k.node for k in keys),
            repositories=repositories,
            selected=frozenset(labels),
            known=self._known(keys),
            images=images if self.executor is not None else None,
            no_cache=self.options.no_cache,
        )
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
        check_builds(self.graph, self.loaded.root, nodes, self.builder, self.requested_builder, self.executor)

    def _known(self, keys: list[NodeKey]) -> Known:
        """What the local cache holds for ``keys``: their records, and why a key without one is new."""
        records = {k.key: record for k in keys if (record := self.records.get(k.key)) is not None}
        reasons = {k.key: self._why_new_key(k) for k in keys if k.key not in records}
        return Known(records=records, new_key_reasons=reasons)

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
        execution = Execution(
            loaded=self.loaded,
            records=self.records,
            cache_dir=self.cache_dir,
            executor=self.executor,
            computer=self.computer,
            options=self.options,
            base_labels=workspace_labels(self.loaded.root),
            listener=self.listener,
            remote=self.remote,
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
        second = all_reports(plan, execution.done, executed.outcomes)
        reports = {n: prefer_work_done(first_pass.get(n), report) for n, report in second.items()}
        reports = self._with_builders(plan, reports, execution.builders)
        interrupted = executed.stop is not None
        promoted = () if interrupted else promote(self.graph, self.executor, plan, reports)
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
            warnings=tuple(self.remote.warnings) if self.remote is not None else (),
            published=published,
            executor=ExecutorUse(
                requested=self.requested_builder,
                used=None if self.builder is None else self.builder.name,
                detail=None if self.builder is None else self.builder.detail,
            ),
        )

    def _with_builders(
        self, plan: Plan, reports: Mapping[Node, NodeReport], builders: Mapping[Node, str]
    ) -> dict[Node, NodeReport]:
        """Each node built here (or whose build failed here) with its builder and the engine's URL."""
        url = getattr(self.executor, "url", None)
        engine = url if isinstance(url, str) else None
        by_node = plan.by_node()
        updated = {}
        for node, report in reports.items():
            if report.status is NodeStatus.BUILT and node in builders:
                report = replace(report, builder=builders[node], engine=engine)
            elif (
                report.status is NodeStatus.FAILED and by_node[node].action is Action.BUILD and self.builder is not None
            ):
                report = replace(report, builder=self.builder.name, engine=engine)
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
