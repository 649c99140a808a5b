"""Running a plan on an engine: pulls, builds, records, and the pushes to the registry cache beside them.

A node's work holds its key's lock (two invocations never build one key at once; the second finds
the first's record and uses it). What is sent to the engine is proven to be what the key hashed
(the request's context check), the image is built untagged and checked, and only then does it get
its content tag and a record: a failed or interrupted build leaves neither. Pushes run beside the
builds, so a child never waits for its parent's upload; a failed push is a warning, not the node's.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from orchestrator.cache.locks import key_lock
from orchestrator.cache.records import BuildRecord
from orchestrator.core.content import content_tag
from orchestrator.core.model import ImageTarget, Node, RootfsTarget
from orchestrator.engine.api import BuildRequest, ImageSummary, Progress, TransferFailed
from orchestrator.errors import OrchestratorError
from orchestrator.keys.keys import KeyComputer
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.builder import build_secrets
from orchestrator.pipeline.fleet import EngineLost, Fleet, Member
from orchestrator.pipeline.hermetic import is_hermetic, pins_of
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.plan import Action, Plan, PlannedNode, check_record
from orchestrator.pipeline.request import image_request, log_path, read_dockerfile, rootfs_check, rootfs_request
from orchestrator.pipeline.rootfs import rootfs_tarball
from orchestrator.pipeline.scan import ScanGate, scan_log
from orchestrator.pipeline.summary import NodeStatus
from orchestrator.pipeline.transfers import Holdings
from orchestrator.registry.cache import RemoteCache
from orchestrator.registry.client import RemoteImage
from orchestrator.workspace.loading import LoadedWorkspace


class Listener(scheduler.Listener[Node], Protocol):
    """A display's callbacks: the scheduler's (node started, finished), the plan before it runs, and
    progress: a build's Dockerfile steps and the pushes to the registry cache. Unlike the scheduler's,
    ``step`` and ``push_*`` are called from worker threads."""

    def planned(self, plan: Plan) -> None: ...

    def step(self, node: Node, step: str) -> None:
        """The node's build started ``step`` (``Step 3/7 : RUN apt-get ...``)."""

    def push_started(self, node: Node) -> None:
        """The node's image started uploading to the registry cache."""

    def push_finished(self, node: Node, *, pushed: bool) -> None:
        """The upload ended; ``pushed=False`` when it failed (the registry cache notes why)."""

    def placed(self, node: Node, engine: str) -> None:
        """With several engines: the node's work goes to the engine at URL ``engine``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Executed:
    """How a plan's pulls and builds ended."""

    outcomes: Mapping[Node, scheduler.Outcome[Node]]
    stop: KeyboardInterrupt | None  # the interruption that stopped them, if any


class Execution:
    """Pulls and builds of one invocation on its engines (``fleet``); ``done`` and ``in_registry`` fill as it runs.

    With several engines a ready node is placed on one (``placement.py``); its parents built or held
    elsewhere reach it through the registry cache by digest, once per engine (``transfers.py``); an
    engine that goes down is left alone and its node built once more on another.
    """

    def __init__(
        self,
        *,
        loaded: LoadedWorkspace,
        fleet: Fleet,
        cache_dir: Path,
        computer: KeyComputer,
        options: BuildOptions,
        base_labels: Mapping[str, str],
        listener: Listener | None = None,
        remote: RemoteCache | None = None,
        scan: ScanGate | None = None,
    ) -> None:
        self.loaded = loaded
        self.graph = loaded.graph
        self.fleet = fleet
        self.cache_dir = cache_dir
        self.computer = computer
        self.options = options
        self.base_labels = base_labels
        self.listener = listener
        self.remote = remote
        self.scan = scan  # WORKSPACE's scan gate: each image built is scanned before its record
        self.done: dict[Node, tuple[NodeStatus, BuildRecord]] = {}  # filled by worker threads
        self.holdings = Holdings(remote=remote)
        self.in_registry = self.holdings.in_registry  # each node's image in the registry cache, if known
        self.builders: dict[Node, str] = {}  # the builder that built each node built here ("buildkit", "classic")
        self.engine_of: dict[Node, str] = {}  # the engine that built, pulled or holds each node (its URL)
        self.notices: list[str] = []  # engines that went down, nodes built again elsewhere
        self._pushes: ThreadPoolExecutor | None = None  # while a plan runs: uploads to the registry cache
        self._by_node: dict[Node, PlannedNode] = {}
        self._lock = threading.Lock()

    def execute(self, plan: Plan) -> Executed:
        """Run the plan's pulls and builds, parents first, in parallel."""
        if self.listener is not None:
            self.listener.planned(plan)
        by_node = plan.by_node()
        self._by_node = by_node
        for planned in plan.nodes:
            if planned.action is Action.CACHED and planned.record is not None:
                self.done[planned.node] = (NodeStatus.CACHED, planned.record)
                holder = self.fleet.member(planned.engine) if planned.engine else self.fleet.home
                self.engine_of[planned.node] = holder.url
                for url, image_id in planned.held or ((holder.url, planned.record.image_id),):
                    self.holdings.hold(planned.node, url, image_id)
                if planned.remade:
                    holder.records.put(planned.node, planned.record)
                else:
                    holder.records.note_current(planned.node, planned.key)
            if planned.remote is not None:
                self.holdings.note_copy(planned.node, planned.remote)
        # Pulls and builds are the scheduler's work; a pull waits for nothing, a build for its parents.
        work = [p.node for p in plan.nodes if p.action is Action.BUILD or p.pull]
        parents = {p.node: self.graph.nodes.predecessors(p.node) for p in plan.to_build}
        priority = scheduler.critical_path_priority(work, parents, self._durations(plan, work))
        jobs = self.fleet.capacity if self.fleet.several else self.options.jobs
        with ThreadPoolExecutor(max_workers=max(jobs, self.options.jobs), thread_name_prefix="push") as pushes:
            self._pushes = pushes
            try:
                outcomes = scheduler.run(
                    work,
                    parents,
                    self._worker(by_node),
                    jobs=jobs,
                    keep_going=self.options.keep_going,
                    priority=priority,
                    listener=self.listener,
                )
            except KeyboardInterrupt as stop:
                pushes.shutdown(wait=True, cancel_futures=True)
                return Executed(outcomes=getattr(stop, "outcomes", {}), stop=stop)
            finally:
                self._pushes = None
            self._push_cached(plan, pushes)
        return Executed(outcomes=outcomes, stop=None)

    def load_home(self, nodes: Iterable[Node]) -> None:
        """Bring ``nodes`` done on other engines to the home engine (``--load``, image tests, SBOMs read there)."""
        home = self.fleet.home
        for node in nodes:
            if node in self.done and self.holdings.image_on(node, home.url) is None and home.down is None:
                try:
                    self._onto(home, node)
                except OrchestratorError as exc:
                    self._note(f"{node}: not brought to the home engine {home.url}: {exc}")

    def _durations(self, plan: Plan, work: list[Node]) -> dict[Node, float]:
        """Each node's expected duration (its last build's, on any engine), for the critical-path priority."""
        by_node = plan.by_node()
        durations = {}
        for node in work:
            last = self.fleet.last_duration(node)
            durations[node] = last if last is not None and by_node[node].action is Action.BUILD else 1.0
        return durations

    def _note(self, message: str) -> None:
        with self._lock:
            self.notices.append(message)

    # -- one node (worker threads) -----------------------------------------------------------

    def _worker(self, by_node: dict[Node, PlannedNode]) -> Callable[[Node, threading.Event], None]:
        def work(node: Node, cancel: threading.Event) -> None:
            planned = by_node[node]
            parents = [ref.node for ref in self.graph.node_deps[node].parents]
            tried: frozenset[str] = frozenset()
            while True:
                member = self.fleet.acquire(node.platform, self.holdings.holding(parents), cancel, avoid=tried)
                try:
                    if self.fleet.several and self.listener is not None:
                        self.listener.placed(node, member.url)
                    self._work_on(member, planned, cancel)
                    return
                except OrchestratorError as exc:
                    if not self._engine_lost(member, exc, cancel, tried):
                        raise
                    tried = frozenset({member.url})
                    self._note(f"{node}: engine {member.url} went down ({member.down}); built again on another engine")
                finally:
                    self.fleet.release(member)

        return work

    def _engine_lost(
        self, member: Member, exc: OrchestratorError, cancel: threading.Event, tried: frozenset[str]
    ) -> bool:
        """Whether a failure on ``member`` was the engine's and the node is to be tried once more elsewhere."""
        if not self.fleet.several or cancel.is_set() or tried or isinstance(exc, EngineLost):
            return False
        return self.fleet.went_down(member) is not None  # else the engine answers: the work itself failed

    def _work_on(self, member: Member, planned: PlannedNode, cancel: threading.Event) -> None:
        with key_lock(self.cache_dir, planned.key):
            # Another invocation may have built this key while we waited for the lock
            # (--no-cache builds the selected nodes whatever the cache holds).
            if not planned.forced:
                record, _ = check_record(member.records.get(planned.key), planned.key, _has(member, planned))
                if record is not None:
                    self.holdings.hold(planned.node, member.url, record.image_id)
                    self._finish(member, planned.node, NodeStatus.CACHED, record)
                    return
            if planned.action is Action.REMOTE:
                self._pull(member, planned)
            else:
                self._build(member, planned, cancel)

    def _pull(self, member: Member, planned: PlannedNode) -> None:
        assert self.remote is not None
        started = time.monotonic()
        repository = self.graph.targets[planned.node.label].repository
        info = self.remote.pull(member.executor, planned, repository, copy=planned.remote)
        self._record(member, planned, info.image_id, started, log="", status=NodeStatus.PULLED)

    def _onto(self, member: Member, node: Node, cancel: threading.Event | None = None) -> str:
        """The image ID of ``node`` on ``member``, pulling it there through the registry cache first if need be.

        With ``cancel`` (a child's build needs it), a node that no live engine holds and the registry
        lacks (every engine holding it went down before its upload) is built again on ``member``.
        """
        planned = self._by_node[node]
        repository = self.graph.targets[node.label].repository

        def pull(copy: RemoteImage) -> str:
            assert self.remote is not None
            started = time.monotonic()
            info = self.remote.pull(member.executor, planned, repository, copy=copy)
            record = self._record_on(member, planned, info.image_id, started, log="")
            with self._lock:
                self.done.setdefault(node, (NodeStatus.PULLED, record))  # a registry hit fetched for a child
                self.engine_of.setdefault(node, member.url)
            return info.image_id

        try:
            return self.holdings.onto(member.url, planned, pull, push=self._push_now)
        except TransferFailed:
            if cancel is None or any(self.fleet.member(url).down is None for url in self.holdings.holders(node)):
                raise
            self._note(
                f"{node}: held only on engines that went down, and not in the registry; built again on {member.url}"
            )
            self._work_on(member, replace(planned, action=Action.BUILD), cancel)
            found = self.holdings.image_on(node, member.url)
            if found is None:
                raise
            return found

    def _build(self, member: Member, planned: PlannedNode, cancel: threading.Event) -> None:
        node = planned.node
        target = self.graph.targets[node.label]
        started = time.monotonic()
        if isinstance(target, ImageTarget):
            request = self._image_request(member, planned, target, cancel)
        else:
            request = self._rootfs_request(planned, target, cancel)
        result = member.executor.build(request, cancel, self._progress(node))
        with self._lock:
            self.builders[node] = result.builder
        # The image is what the key names (the executor checked the context sent, the key label and
        # the platform): only now does it get its content tag, and then its record.
        member.executor.tag(result.image_id, target.repository, content_tag(planned.key))
        if self.scan is not None:  # a failed scan removes the content tag again: no record, push or human tag
            log = scan_log(log_path(self.cache_dir, node, planned.key))
            self.scan.gate(member.executor, member.url, planned, log=log, cancel=cancel, progress=self._progress(node))
        self._record(member, planned, result.image_id, started, log=request.log_path, status=NodeStatus.BUILT)
        if self.remote is not None and self.remote.write and self._pushes is not None:
            # Registered before the node's work returns: a child on another engine waits for this upload.
            self.holdings.uploading(node, self._pushes.submit(self._push, member, planned, result.image_id))

    def _progress(self, node: Node) -> Progress | None:
        listener = self.listener
        return None if listener is None else lambda step: listener.step(node, step)

    def _image_request(
        self, member: Member, planned: PlannedNode, target: ImageTarget, cancel: threading.Event
    ) -> BuildRequest:
        node = planned.node
        parent_images = {}
        for parent in self.graph.node_deps[node].parents:
            parent_images[parent.node] = (self._by_node[parent.node].image, self._onto(member, parent.node, cancel))
        return image_request(
            target=target,
            node=node,
            key=planned.key,
            image=planned.image,
            deps=self.graph.node_deps[node],
            parent_images=parent_images,
            entries=self.computer.context_of(node.label),
            base_labels=self.base_labels,
            log=log_path(self.cache_dir, node, planned.key),
            dockerfile=read_dockerfile(self.loaded.root, target),
            inputs_digest=self.computer.inputs_digest(node.label),
            algorithm=self.computer.algorithm,
            pins=pins_of(self.graph, self.loaded.lock, node),
            network_mode="none" if is_hermetic(target, self.loaded.workspace.settings) else None,
            no_cache=planned.forced,
            engine_timeout_s=self.options.engine_timeout_s,
            secrets=build_secrets(target, self.loaded.root),
        )

    def _rootfs_request(self, planned: PlannedNode, target: RootfsTarget, cancel: threading.Event) -> BuildRequest:
        node = planned.node
        log = log_path(self.cache_dir, node, planned.key)
        tarball = rootfs_tarball(
            root=self.loaded.root,
            cache_dir=self.cache_dir,
            target=target,
            node=node,
            key=planned.key,
            log=log,
            cancel=cancel,
        )
        return rootfs_request(
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

    def _record(
        self, member: Member, planned: PlannedNode, image_id: str, started: float, *, log: str, status: NodeStatus
    ) -> None:
        record = self._record_on(member, planned, image_id, started, log=log)
        self._finish(member, planned.node, status, record)

    def _record_on(
        self, member: Member, planned: PlannedNode, image_id: str, started: float, *, log: str
    ) -> BuildRecord:
        """Write the record of ``planned``'s image on ``member`` (its content tag is already there)."""
        record = BuildRecord(
            key=planned.key,
            label=str(planned.node.label),
            platform=planned.node.platform,
            image=planned.image,
            image_id=image_id,
            duration_s=round(time.monotonic() - started, 3),
            built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            log=log,
        )
        member.records.put(planned.node, record)
        self.holdings.hold(planned.node, member.url, image_id)
        return record

    def _push(self, member: Member, planned: PlannedNode, image_id: str) -> RemoteImage | None:
        """Share a node's image through the registry cache (a failure is a warning, not the node's)."""
        assert self.remote is not None
        if self.remote.down is not None or self.remote.push_refused is not None:
            return None  # RemoteCache.push would not try: nothing to tell the listener
        repository = self.graph.targets[planned.node.label].repository
        if self.listener is not None:
            self.listener.push_started(planned.node)
        image = self.remote.push(member.executor, planned, repository, image_id)
        if self.listener is not None:
            self.listener.push_finished(planned.node, pushed=image is not None)
        if image is not None:
            self.holdings.note_copy(planned.node, image)
        return image

    def _push_now(self, node: Node) -> RemoteImage | None:
        """Push ``node`` from a live engine holding it (a child on another engine needs it); None if none can."""
        for url, image_id in self.holdings.holders(node).items():
            member = self.fleet.member(url)
            if member.down is None:
                return self._push(member, self._by_node[node], image_id)
        return None

    def _push_cached(self, plan: Plan, pushes: ThreadPoolExecutor) -> None:
        """Push what the engines had but the registry lacks (built before the registry was set, say)."""
        if self.remote is None or not self.remote.write or self.remote.down is not None:
            return
        for planned in plan.nodes:
            status, record = self.done.get(planned.node, (None, None))
            if status is NodeStatus.CACHED and record is not None and planned.node not in self.in_registry:
                holder = self.fleet.member(self.engine_of.get(planned.node, self.fleet.home.url))
                if holder.down is None:
                    pushes.submit(self._push, holder, planned, record.image_id)

    def _finish(self, member: Member, node: Node, status: NodeStatus, record: BuildRecord) -> None:
        with self._lock:
            self.done[node] = (status, record)
            self.engine_of[node] = member.url


def _has(member: Member, planned: PlannedNode) -> Mapping[str, ImageSummary]:
    """What ``member`` holds under the node's content tag now (asked, not listed)."""
    info = member.executor.inspect(planned.image)
    return {} if info is None else {planned.image: ImageSummary(image_id=info.image_id, labels=info.labels)}
