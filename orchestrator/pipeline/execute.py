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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.cache.locks import key_lock
from orchestrator.cache.records import BuildRecord, Records
from orchestrator.core.content import content_tag
from orchestrator.core.model import ImageTarget, Node, RootfsTarget
from orchestrator.engine.api import BuildRequest, Executor, ImageSummary, Progress
from orchestrator.keys.keys import KeyComputer
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.builder import build_secrets
from orchestrator.pipeline.hermetic import is_hermetic, pins_of
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.plan import Action, Plan, PlannedNode, check_record
from orchestrator.pipeline.request import image_request, log_path, read_dockerfile, rootfs_check, rootfs_request
from orchestrator.pipeline.rootfs import rootfs_tarball
from orchestrator.pipeline.summary import NodeStatus
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Executed:
    """How a plan's pulls and builds ended."""

    outcomes: Mapping[Node, scheduler.Outcome[Node]]
    stop: KeyboardInterrupt | None  # the interruption that stopped them, if any


class Execution:
    """Pulls and builds of one invocation on one engine; ``done`` and ``in_registry`` fill as it runs."""

    def __init__(
        self,
        *,
        loaded: LoadedWorkspace,
        records: Records,
        cache_dir: Path,
        executor: Executor,
        computer: KeyComputer,
        options: BuildOptions,
        base_labels: Mapping[str, str],
        listener: Listener | None = None,
        remote: RemoteCache | None = None,
    ) -> None:
        self.loaded = loaded
        self.graph = loaded.graph
        self.records = records
        self.cache_dir = cache_dir
        self.executor = executor
        self.computer = computer
        self.options = options
        self.base_labels = base_labels
        self.listener = listener
        self.remote = remote
        self.done: dict[Node, tuple[NodeStatus, BuildRecord]] = {}  # filled by worker threads
        self.in_registry: dict[Node, RemoteImage] = {}  # each node's image in the registry cache, if known
        self.builders: dict[Node, str] = {}  # the builder that built each node built here ("buildkit", "classic")
        self._pushes: ThreadPoolExecutor | None = None  # while a plan runs: uploads to the registry cache
        self._lock = threading.Lock()

    def execute(self, plan: Plan) -> Executed:
        """Run the plan's pulls and builds, parents first, in parallel."""
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
        priority = scheduler.critical_path_priority(work, parents, self._durations(plan, work))
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
                return Executed(outcomes=getattr(stop, "outcomes", {}), stop=stop)
            finally:
                self._pushes = None
            self._push_cached(plan, pushes)
        return Executed(outcomes=outcomes, stop=None)

    def _durations(self, plan: Plan, work: list[Node]) -> dict[Node, float]:
        """Each node's expected duration (its last build's), for the critical-path priority."""
        by_node = plan.by_node()
        durations = {}
        for node in work:
            last = self.records.last_key(node)
            record = self.records.get(last) if last else None
            durations[node] = record.duration_s if record and by_node[node].action is Action.BUILD else 1.0
        return durations

    # -- one node (worker threads) -----------------------------------------------------------

    def _worker(self, by_node: dict[Node, PlannedNode]) -> Callable[[Node, threading.Event], None]:
        def work(node: Node, cancel: threading.Event) -> None:
            planned = by_node[node]
            with key_lock(self.cache_dir, planned.key):
                # Another invocation may have built this key while we waited for the lock
                # (--no-cache builds the selected nodes whatever the cache holds).
                if not planned.forced:
                    record, _ = check_record(self.records.get(planned.key), planned.key, self._engine_has(planned))
                    if record is not None:
                        self._finish(node, NodeStatus.CACHED, record)
                        return
                if planned.action is Action.REMOTE:
                    self._pull(planned)
                else:
                    self._build(planned, cancel)

        return work

    def _engine_has(self, planned: PlannedNode) -> Mapping[str, ImageSummary]:
        """What the engine holds under the node's content tag now (asked, not listed)."""
        info = self.executor.inspect(planned.image)
        return {} if info is None else {planned.image: ImageSummary(image_id=info.image_id, labels=info.labels)}

    def _pull(self, planned: PlannedNode) -> None:
        assert self.remote is not None
        started = time.monotonic()
        repository = self.graph.targets[planned.node.label].repository
        info = self.remote.pull(self.executor, planned, repository)
        self._record(planned, info.image_id, started, log="", status=NodeStatus.PULLED)

    def _build(self, planned: PlannedNode, cancel: threading.Event) -> None:
        node = planned.node
        target = self.graph.targets[node.label]
        started = time.monotonic()
        if isinstance(target, ImageTarget):
            request = self._image_request(planned, target)
        else:
            request = self._rootfs_request(planned, target, cancel)
        result = self.executor.build(request, cancel, self._progress(node))
        with self._lock:
            self.builders[node] = result.builder
        # The image is what the key names (the executor checked the context sent, the key label and
        # the platform): only now does it get its content tag, and then its record.
        self.executor.tag(result.image_id, target.repository, content_tag(planned.key))
        self._record(planned, result.image_id, started, log=request.log_path, status=NodeStatus.BUILT)
        if self.remote is not None and self.remote.write and self._pushes is not None:
            self._pushes.submit(self._push, planned, result.image_id)

    def _progress(self, node: Node) -> Progress | None:
        listener = self.listener
        return None if listener is None else lambda step: listener.step(node, step)

    def _image_request(self, planned: PlannedNode, target: ImageTarget) -> BuildRequest:
        node = planned.node
        parent_images = {}
        for parent in self.graph.node_deps[node].parents:
            with self._lock:
                _, parent_record = self.done[parent.node]
            parent_images[parent.node] = (parent_record.image, parent_record.image_id)
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

    def _record(self, planned: PlannedNode, image_id: str, started: float, *, log: str, status: NodeStatus) -> None:
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
        self.records.put(planned.node, record)
        self._finish(planned.node, status, record)

    def _push(self, planned: PlannedNode, image_id: str) -> None:
        """Share a node's image through the registry cache (a failure is a warning, not the node's)."""
        assert self.remote is not None
        if self.remote.down is not None or self.remote.push_refused is not None:
            return  # RemoteCache.push would not try: nothing to tell the listener
        repository = self.graph.targets[planned.node.label].repository
        if self.listener is not None:
            self.listener.push_started(planned.node)
        image = self.remote.push(self.executor, planned, repository, image_id)
        if self.listener is not None:
            self.listener.push_finished(planned.node, pushed=image is not None)
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
