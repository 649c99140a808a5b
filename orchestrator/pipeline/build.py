"""One ``orchestrator build``: keys, plan, scheduled builds, records, promotion of human tags.

    select -> keys -> plan (cached | remote | build) -> scheduler pulls and builds -> records
           -> pushes to the registry cache -> human tags (and with --push, the registry's)

A node's build holds the key's lock (two invocations never build one key at once; the second
finds the first's record and uses it). What is sent to the engine is proven to be what the key
hashed (the request's ContextCheck), the image is built untagged and checked, and only then does it
get its content tag and a record: a failed or interrupted build leaves neither. Human tags move
only for targets whose every node, and every node those depend on, succeeded. With a registry
cache, what the registry has is not built; it is pulled only when a node built here rests on it.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from orchestrator.cache.locks import key_lock
from orchestrator.cache.records import BuildRecord, Records
from orchestrator.cache.store import Store
from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget, Node
from orchestrator.core.platforms import host_platform, normalize
from orchestrator.engine.api import BuildRequest, Executor, ImageSummary, TransferFailed
from orchestrator.errors import (
    EXIT_BUILD_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    NothingMatchedError,
)
from orchestrator.keys.hashing import keys_with_store
from orchestrator.keys.keys import KeyComputer, NodeKey
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.hermetic import check_hermetic, check_pinned_images, is_hermetic, pins_of
from orchestrator.pipeline.plan import Action, Plan, PlannedNode, check_record, content_tag, make_plan, use_remote
from orchestrator.pipeline.request import image_request, log_path, read_dockerfile, rootfs_check, rootfs_request
from orchestrator.pipeline.rootfs import rootfs_tarball
from orchestrator.registry.cache import RemoteCache
from orchestrator.registry.client import RemoteImage
from orchestrator.registry.publish import Published, publish
from orchestrator.workspace.loading import LoadedWorkspace
from orchestrator.workspace.provenance import workspace_labels


class NodeStatus(StrEnum):
    BUILT = "built"
    CACHED = "cached"
    REMOTE_CACHED = "remote-cached"  # in the registry cache, not needed here
    PULLED = "pulled"  # from the registry cache
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


OK_STATUSES = frozenset({NodeStatus.BUILT, NodeStatus.CACHED, NodeStatus.REMOTE_CACHED, NodeStatus.PULLED})


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it stops a build as cleanly as Ctrl-C (exit 143)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    keep_going: bool = True
    no_cache: bool = False  # build the selected nodes again, without the engine's layer cache
    dry_run: bool = False
    engine_timeout_s: float | None = None  # a build fails when its engine answers nothing for this long
    platforms: tuple[str, ...] = ()  # only these platforms' nodes of the selection (default: all)
    load: bool = False  # pull the selection's registry hits too, so the engine has every image
    push: bool = False  # put the selection's human tags in the registry


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeReport:
    node: Node
    key: str
    status: NodeStatus
    reason: str
    duration_s: float | None = None
    image_id: str | None = None
    tags: tuple[str, ...] = ()
    log: str | None = None
    error: str | None = None
    log_tail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildSummary:
    plan: Plan
    reports: tuple[NodeReport, ...]
    promoted: tuple[str, ...]
    interrupted: bool = False
    terminated: bool = False  # the interruption was a SIGTERM
    warnings: tuple[str, ...] = ()
    published: Published | None = None  # with --push

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_TERMINATED if self.terminated else EXIT_INTERRUPTED
        if any(r.status not in OK_STATUSES for r in self.reports):
            return EXIT_BUILD_FAILED
        if self.published is not None and self.published.errors:
            return EXIT_BUILD_FAILED
        return EXIT_OK

    def count(self, status: NodeStatus) -> int:
        return sum(1 for r in self.reports if r.status is status)


class Listener(Protocol):
    """Progress callbacks for a display (called from the scheduling thread)."""

    def planned(self, plan: Plan) -> None: ...
    def started(self, node: Node) -> None: ...
    def finished(self, outcome: scheduler.Outcome[Node]) -> None: ...


class Build:
    """The state of one build invocation."""

    def __init__(
        self,
        loaded: LoadedWorkspace,
        store: Store,
        cache_dir: Path,
        executor: Executor | None,
        options: BuildOptions,
        listener: Listener | None = None,
        remote: RemoteCache | None = None,
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
        self.computer: KeyComputer | None = None
        self.base_labels = workspace_labels(loaded.root)
        self.done: dict[Node, tuple[NodeStatus, BuildRecord]] = {}  # filled by worker threads
        self.in_registry: dict[Node, RemoteImage] = {}  # each node's image in the registry cache, if known
        self.distrusted: set[Node] = set()  # nodes whose registry copy failed to pull or was wrong
        self._keys: list[NodeKey] = []
        self._pushes: ThreadPoolExecutor | None = None  # while a plan runs: uploads to the registry cache
        self._lock = threading.Lock()

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
        """Cached or to build, for every node of the selection's closure (``images``: one listing)."""
        if keys is None:
            keys = self.compute_keys(labels)
        self._keys = keys
        check_hermetic(self.graph, self.loaded.workspace.settings, self.loaded.lock, [k.node for k in keys])
        closure = self.graph.with_dependencies(labels)
        repositories = {label: self.graph.targets[label].repository for label in closure}
        if images is None and self.executor is not None:
            images = self.executor.references()
        plan = make_plan(
            store=self.store,
            keys=keys,
            order=self.graph.topological_nodes(k.node for k in keys),
            repositories=repositories,
            selected=frozenset(labels),
            executor=self.executor,
            images=images,
            no_cache=self.options.no_cache,
        )
        if self.remote is not None:
            plan = self._use_registry(plan, labels, repositories)
        if self.executor is not None:
            check_pinned_images(self.graph, self.loaded.lock, [p.node for p in plan.to_build], self.executor)
        return plan

    def _use_registry(self, plan: Plan, labels: list[Label], repositories: Mapping[Label, str]) -> Plan:
        assert self.remote is not None
        found = self.remote.lookup(plan.nodes, {p.node: repositories[p.node.label] for p in plan.nodes})
        for node in self.distrusted:
            found.pop(node, None)
        parents = {p.node: [ref.node for ref in self.graph.node_deps[p.node].parents] for p in plan.nodes}
        load = self.selected_nodes(labels) if self.options.load else ()
        return use_remote(plan, found, parents, load=load)

    def run(self, plan: Plan) -> BuildSummary:
        outcomes, stop = self._execute(plan)
        failed_pulls = [] if stop is not None else _failed_pulls(plan, outcomes)
        first_pass: dict[Node, NodeReport] = {}
        if failed_pulls and self.remote is not None:
            # A registry copy that failed to pull, or turned out wrong once pulled, is built here
            # instead: plan again without trusting those copies (what was done is now cached).
            first_pass = {p.node: self._report(p, outcomes.get(p.node)) for p in plan.nodes}
            self.distrusted.update(failed_pulls)
            for node in failed_pulls:
                self.remote.warn(f"{node}: {outcomes[node].error}; building it here instead")
            plan = self.plan(sorted(plan.selected), self._keys)
            outcomes, stop = self._execute(plan)
        interrupted = stop is not None
        reports = tuple(
            _prefer_work_done(first_pass.get(p.node), self._report(p, outcomes.get(p.node))) for p in plan.nodes
        )
        by_report = {r.node: r for r in reports}
        promoted = () if interrupted else self._promote(plan, by_report)
        published = None
        if self.options.push and not interrupted:
            published = self._publish(plan, by_report)
        warnings = tuple(self.remote.warnings) if self.remote is not None else ()
        return BuildSummary(
            plan=plan,
            reports=reports,
            promoted=promoted,
            interrupted=interrupted,
            terminated=isinstance(stop, Terminated) or isinstance(getattr(stop, "__cause__", None), Terminated),
            warnings=warnings,
            published=published,
        )

    def _execute(self, plan: Plan) -> tuple[dict[Node, scheduler.Outcome[Node]], KeyboardInterrupt | None]:
        """Run the plan's pulls and builds; their outcomes, and the interruption that stopped them if any."""
        if self.listener is not None:
            self.listener.planned(plan)
        by_node = plan.by_node()
        for planned in plan.nodes:
            if planned.action is Action.CACHED and planned.record is not None:
                self.done[planned.node] = (NodeStatus.CACHED, planned.record)
                if planned.remade:
                    self.records.put(planned.node, planned.record)
                else:
                    self.records.note_current(planned.node, planned.key)
            if planned.remote is not None:
                self.in_registry[planned.node] = planned.remote
        # Pulls and builds are the scheduler's work; a pull waits for nothing, a build for its parents.
        work = [p.node for p in plan.nodes if p.action is Action.BUILD or p.pull]
        parents = {p.node: self.graph.nodes.predecessors(p.node) for p in plan.to_build}
        durations = {}
        for node in work:
            last = self.records.last_key(node)
            record = self.records.get(last) if last else None
            durations[node] = record.duration_s if record and by_node[node].action is Action.BUILD else 1.0
        priority = scheduler.critical_path_priority(work, parents, durations)
        # Pushes run beside the builds: a child need not wait for its parent's upload.
        with ThreadPoolExecutor(max_workers=self.options.jobs, thread_name_prefix="push") as pushes:
            self._pushes = pushes
            try:
                outcomes = scheduler.run(
                    work,
                    parents,
                    self._worker(by_node),
                    jobs=self.options.jobs,
                    keep_going=self.options.keep_going,
                    priority=priority,
                    listener=self.listener,
                )
            except KeyboardInterrupt as stop:
                pushes.shutdown(wait=True, cancel_futures=True)
                return getattr(stop, "outcomes", {}), stop
            finally:
                self._pushes = None
            self._push_cached(plan, pushes)
        return outcomes, None

    # -- building one node (worker threads) ---------------------------------------------------

    def _worker(self, by_node: dict[Node, PlannedNode]) -> Callable[[Node, threading.Event], None]:
        def work(node: Node, cancel: threading.Event) -> None:
            planned = by_node[node]
            with key_lock(self.cache_dir, planned.key):
                # Another invocation may have built this key while we waited for the lock
                # (--no-cache builds the selected nodes whatever the cache holds).
                if not planned.forced:
                    record, _ = check_record(self.records.get(planned.key), planned.key, self.executor)
                    if record is not None:
                        self._finish(node, NodeStatus.CACHED, record)
                        return
                if planned.action is Action.REMOTE:
                    self._pull(planned)
                else:
                    self._build(planned, cancel)

        return work

    def _pull(self, planned: PlannedNode) -> None:
        assert self.executor is not None and self.remote is not None
        started = time.monotonic()
        repository = self.graph.targets[planned.node.label].repository
        info = self.remote.pull(self.executor, planned, repository)
        record = BuildRecord(
            key=planned.key,
            label=str(planned.node.label),
            platform=planned.node.platform,
            image=planned.image,
            image_id=info.image_id,
            duration_s=round(time.monotonic() - started, 3),
            built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            log="",
        )
        self.records.put(planned.node, record)
        self._finish(planned.node, NodeStatus.PULLED, record)

    def _build(self, planned: PlannedNode, cancel: threading.Event) -> None:
        assert self.executor is not None and self.computer is not None
        node = planned.node
        target = self.graph.targets[node.label]
        log = log_path(self.cache_dir, node, planned.key)
        started = time.monotonic()
        request: BuildRequest
        if isinstance(target, ImageTarget):
            entries = self.computer.context_of(node.label)
            parent_images = {}
            for parent in self.graph.node_deps[node].parents:
                with self._lock:
                    _, parent_record = self.done[parent.node]
                parent_images[parent.node] = (parent_record.image, parent_record.image_id)
            request = image_request(
                root=self.loaded.root,
                target=target,
                node=node,
                key=planned.key,
                image=planned.image,
                deps=self.graph.node_deps[node],
                parent_images=parent_images,
                entries=entries,
                base_labels=self.base_labels,
                log=log,
                dockerfile=read_dockerfile(self.loaded.root, target),
                inputs_digest=self.computer.inputs_digest(node.label),
                algorithm=self.computer.algorithm,
                pins=pins_of(self.graph, self.loaded.lock, node),
                network_mode="none" if is_hermetic(target, self.loaded.workspace.settings) else None,
                no_cache=planned.forced,
                engine_timeout_s=self.options.engine_timeout_s,
            )
        else:
            tarball = rootfs_tarball(
                root=self.loaded.root,
                cache_dir=self.cache_dir,
                target=target,
                node=node,
                key=planned.key,
                log=log,
                cancel=cancel,
            )
            request = rootfs_request(
                target=target,
                node=node,
                key=planned.key,
                image=planned.image,
                tarball=tarball,
                base_labels=self.base_labels,
                log=log + ".import",
                check=rootfs_check(
                    root=self.loaded.root,
                    target=target,
                    node=node,
                    inputs_digest=self.computer.inputs_digest(node.label),
                    algorithm=self.computer.algorithm,
                ),
                engine_timeout_s=self.options.engine_timeout_s,
            )
        result = self.executor.build(request, cancel)
        # The image is what the key names (the executor checked the context sent, the key label and
        # the platform): only now does it get its content tag, and then its record.
        self.executor.tag(result.image_id, target.repository, content_tag(planned.key))
        record = BuildRecord(
            key=planned.key,
            label=str(node.label),
            platform=node.platform,
            image=planned.image,
            image_id=result.image_id,
            duration_s=round(time.monotonic() - started, 3),
            built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            log=request.log_path,
        )
        self.records.put(node, record)
        self._finish(node, NodeStatus.BUILT, record)
        if self.remote is not None and self.remote.write and self._pushes is not None:
            self._pushes.submit(self._push, planned, result.image_id)

    def _push(self, planned: PlannedNode, image_id: str) -> None:
        """Share a node's image through the registry cache (a failure is a warning, not the node's)."""
        assert self.executor is not None and self.remote is not None
        repository = self.graph.targets[planned.node.label].repository
        image = self.remote.push(self.executor, planned, repository, image_id)
        if image is not None:
            with self._lock:
                self.in_registry[planned.node] = image

    def _push_cached(self, plan: Plan, pushes: ThreadPoolExecutor) -> None:
        """Push what the engine had but the registry lacks (built before the registry was set, say)."""
        if self.remote is None or not self.remote.write or self.remote.down is not None:
            return
        for planned in plan.nodes:
            status, record = self.done.get(planned.node, (None, None))
            if status is NodeStatus.CACHED and record is not None and planned.node not in self.in_registry:
                pushes.submit(self._push, planned, record.image_id)

    def _finish(self, node: Node, status: NodeStatus, record: BuildRecord) -> None:
        with self._lock:
            self.done[node] = (status, record)

    # -- after the run --------------------------------------------------------------------------

    def _report(self, planned: PlannedNode, outcome: scheduler.Outcome[Node] | None) -> NodeReport:
        if planned.action is Action.REMOTE and not planned.pull:
            return NodeReport(
                node=planned.node,
                key=planned.key,
                status=NodeStatus.REMOTE_CACHED,
                reason=planned.reason,
                duration_s=0.0,
                tags=(planned.image,),
            )
        done = self.done.get(planned.node)
        if done is not None:
            status, record = done
            return NodeReport(
                node=planned.node,
                key=planned.key,
                status=status,
                reason=planned.reason,
                duration_s=record.duration_s if status in (NodeStatus.BUILT, NodeStatus.PULLED) else 0.0,
                image_id=record.image_id,
                tags=(record.image,),
                log=record.log,
            )
        if outcome is None or outcome.status is scheduler.Status.CANCELLED:
            return NodeReport(node=planned.node, key=planned.key, status=NodeStatus.CANCELLED, reason=planned.reason)
        if outcome.status is scheduler.Status.SKIPPED:
            because = f"skipped: {outcome.skipped_because} failed"
            return NodeReport(node=planned.node, key=planned.key, status=NodeStatus.SKIPPED, reason=because)
        error = outcome.error
        took = (outcome.finished or 0.0) - (outcome.started or 0.0)
        return NodeReport(
            node=planned.node,
            key=planned.key,
            status=NodeStatus.FAILED,
            reason=planned.reason,
            duration_s=round(took, 3),
            error=str(error),
            log=getattr(error, "log_path", None),
            log_tail=getattr(error, "log_tail", None),
        )

    def _promote(self, plan: Plan, reports: dict[Node, NodeReport]) -> tuple[str, ...]:
        """Tag ``repository:tag`` for each selected target whose nodes and their ancestors all succeeded.

        Returns the references that moved (those already pointing at the right image are left alone).
        """
        if self.executor is None:
            return ()
        promoted = []
        for label in self._succeeded(plan, reports):
            node = _local_node([n for n in self.graph.nodes_of(label) if n in reports])
            if node is None or reports[node].image_id is None:
                continue  # not the host's platform, or only in the registry (--load pulls it)
            target = self.graph.targets[label]
            image_id = reports[node].image_id
            assert image_id is not None
            for tag in target.tags:
                reference = f"{target.repository}:{tag}"
                current = (plan.images or {}).get(reference)
                if current is None or current.image_id != image_id:
                    self.executor.tag(image_id, target.repository, tag)
                    promoted.append(reference)
        return tuple(promoted)

    def _succeeded(self, plan: Plan, reports: Mapping[Node, NodeReport]) -> list[Label]:
        """Selected targets whose planned nodes, and every node those rest on, succeeded."""
        good = []
        for label in sorted(plan.selected):
            nodes = [n for n in self.graph.nodes_of(label) if n in reports]
            closure = self.graph.nodes_with_ancestors(nodes)
            if nodes and all(reports[n].status in OK_STATUSES for n in closure if n in reports):
                good.append(label)
        return good

    def _publish(self, plan: Plan, reports: Mapping[Node, NodeReport]) -> Published:
        """``--push``: the human tags of every selected target whose closure succeeded, in the registry."""
        if self.remote is None:
            return Published(pushed=(), errors=("--push needs a registry: registry= in WORKSPACE or --registry",))
        if self.remote.down is not None:
            return Published(pushed=(), errors=(f"nothing pushed: the registry is unavailable ({self.remote.down})",))
        targets = [(self.graph.targets[label], self.graph.nodes_of(label)) for label in self._succeeded(plan, reports)]
        return publish(self.remote.registry, targets, self.in_registry)


def _failed_pulls(plan: Plan, outcomes: Mapping[Node, scheduler.Outcome[Node]]) -> list[Node]:
    """Nodes whose registry copy could not be pulled or was wrong once pulled."""
    return [
        p.node
        for p in plan.to_pull
        if p.node in outcomes
        and outcomes[p.node].status is scheduler.Status.FAILED
        and isinstance(outcomes[p.node].error, TransferFailed)
    ]


def _prefer_work_done(first: NodeReport | None, second: NodeReport) -> NodeReport:
    """A node built or pulled by the first pass shows as that, not as cached by the second."""
    if first is not None and first.status in (NodeStatus.BUILT, NodeStatus.PULLED):
        return first
    return second


def _local_node(nodes: list[Node]) -> Node | None:
    """The node whose image the local human tags point at: the host's platform, or the only one."""
    if len(nodes) == 1:
        return nodes[0]
    host = host_platform()
    return next((n for n in nodes if n.platform == host), None)
