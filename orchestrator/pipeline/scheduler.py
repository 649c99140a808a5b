"""Run a DAG of work on a thread pool: parents first, at most ``jobs`` at once, highest priority first.

A ready-set loop after nox ``_parallel.py``: nodes whose parents all succeeded wait in a heap; the
loop starts them on a ``ThreadPoolExecutor`` and blocks in ``wait(FIRST_COMPLETED)`` (no polling,
no sleeps) until one returns. It is generic over node identities (any hashable) and knows nothing of
images or Docker.

- A failure marks every descendant SKIPPED, ``skipped_because`` = the failed ancestor whose failure
  was recorded first (the nearest one on its chain unless two failed ancestors raced); independent
  branches go on (``keep_going=True``). Fail-fast (``keep_going=False``) starts nothing after the first
  failure, lets running work finish, and marks the rest SKIPPED because of that first failure.
- Cancellation (the ``cancel`` event set by another thread) or Ctrl-C in the scheduling thread sets
  the event the works receive, waits for running works, and marks those that raised and everything
  never started CANCELLED. Ctrl-C is then re-raised as :class:`Interrupted`, a ``KeyboardInterrupt``
  carrying every node's outcome in ``outcomes``; a plain cancel just returns the outcomes.
"""

from __future__ import annotations

import enum
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

N = TypeVar("N", bound=Hashable)

Work = Callable[[N, threading.Event], None]


class Status(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome(Generic[N]):
    """How one node ended. ``started``/``finished`` are ``time.monotonic()`` stamps, set if it ran."""

    node: N
    status: Status
    error: BaseException | None = None  # what work() raised: FAILED, or CANCELLED if it raised after a cancel
    skipped_because: N | None = None  # SKIPPED only: the failed ancestor (see the module docstring)
    started: float | None = None
    finished: float | None = None


class Listener(Protocol[N]):
    """Progress callbacks, called from the scheduling thread only; ``finished`` once for every node."""

    def started(self, node: N) -> None: ...

    def finished(self, outcome: Outcome[N]) -> None: ...


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run`, raised once running works have returned; ``outcomes`` covers every node."""

    def __init__(self, outcomes: Mapping[Any, Outcome[Any]]) -> None:
        super().__init__()
        self.outcomes: dict[Any, Outcome[Any]] = dict(outcomes)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Graph(Generic[N]):
    order: tuple[N, ...]  # the nodes, deduplicated, in the caller's order
    parents: Mapping[N, tuple[N, ...]]  # parents within ``order`` only
    children: Mapping[N, tuple[N, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ran:
    started: float
    finished: float
    error: BaseException | None


def _graph(nodes: Iterable[N], parents: Mapping[N, Iterable[N]]) -> _Graph[N]:
    order = tuple(dict.fromkeys(nodes))
    members = set(order)
    ups = {n: tuple(dict.fromkeys(p for p in parents.get(n, ()) if p in members)) for n in order}
    downs: dict[N, list[N]] = {n: [] for n in order}
    for node in order:
        for parent in ups[node]:
            downs[parent].append(node)
    return _Graph(order=order, parents=ups, children={n: tuple(c) for n, c in downs.items()})


def _topological(graph: _Graph[N]) -> list[N]:
    """Kahn's algorithm; raises ValueError naming the nodes left on or behind a cycle."""
    waiting = {n: len(graph.parents[n]) for n in graph.order}
    queue = deque(n for n in graph.order if waiting[n] == 0)
    result: list[N] = []
    while queue:
        node = queue.popleft()
        result.append(node)
        for child in graph.children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                queue.append(child)
    if len(result) < len(graph.order):
        stuck = sorted(str(n) for n in graph.order if waiting[n] > 0)
        raise ValueError(f"dependency cycle among: {', '.join(stuck)}")
    return result


def critical_path_priority(
    nodes: Iterable[N], parents: Mapping[N, Iterable[N]], duration: Mapping[N, float], default: float = 1.0
) -> dict[N, float]:
    """Each node's expected duration plus the longest chain of expected durations below it (within ``nodes``)."""
    graph = _graph(nodes, parents)
    path: dict[N, float] = {}
    for node in reversed(_topological(graph)):  # children before parents
        below = max((path[child] for child in graph.children[node]), default=0.0)
        path[node] = duration.get(node, default) + below
    return {node: path[node] for node in graph.order}


class _Run(Generic[N]):
    """The mutable state of one :func:`run`; worker threads touch only ``_live`` and ``_ran``, under ``_lock``."""

    def __init__(
        self,
        graph: _Graph[N],
        work: Work[N],
        cancel: threading.Event,
        *,
        jobs: int,
        keep_going: bool,
        priority: Mapping[N, float],
        listener: Listener[N] | None,
    ) -> None:
        self.outcomes: dict[N, Outcome[N]] = {}
        self._graph, self._work, self._cancel, self._jobs = graph, work, cancel, jobs
        self._keep_going, self._priority, self._listener = keep_going, priority, listener
        self._index = {node: i for i, node in enumerate(graph.order)}
        self._waiting = {node: len(graph.parents[node]) for node in graph.order}  # parents not yet SUCCEEDED
        self._ready: list[tuple[float, str, int]] = []  # heap: (-priority, str(node), index)
        self._running: dict[Future[_Ran | None], N] = {}
        self._first_failure: list[N] = []  # a list so that a node may be None
        # Works count themselves in and out: a Ctrl-C can land inside pool.submit(), before the future is tracked.
        self._lock = threading.Condition()
        self._live = 0
        self._ran: dict[N, _Ran] = {}
        for node in graph.order:
            if self._waiting[node] == 0:
                self._push(node)

    def loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            self._start_ready(pool)
            if not self._running:
                break
            done, _ = wait(self._running, return_when=FIRST_COMPLETED)  # blocks; Ctrl-C lands here
            for future in sorted(done, key=lambda f: self._index[self._running[f]]):  # stable order
                self._collect(future)
        self._finish_unstarted()

    def drain(self) -> None:
        """After the cancel event is set: wait for every work that began, then record everything."""
        with self._lock:
            self._lock.wait_for(lambda: self._live == 0)  # works that begin from now on see the cancel and return
            ran = dict(self._ran)
        for node in sorted(ran.keys() - self.outcomes.keys(), key=self._index.__getitem__):
            self._record(self._outcome(node, ran[node]))
        self._finish_unstarted()

    def _call(self, node: N) -> _Ran | None:
        """In a worker thread: run the work unless cancelled before it began (then None)."""
        with self._lock:
            if self._cancel.is_set():  # checked under the lock, so drain() either waits for this work or it never runs
                return None
            self._live += 1
        started = time.monotonic()
        error: BaseException | None = None
        try:
            self._work(node, self._cancel)
        except BaseException as exc:  # even SystemExit from one build is that build's failure, not the loop's
            error = exc
        ran = _Ran(started=started, finished=time.monotonic(), error=error)
        with self._lock:
            self._ran[node] = ran
            self._live -= 1
            self._lock.notify_all()
        return ran

    def _outcome(self, node: N, ran: _Ran) -> Outcome[N]:
        status = Status.SUCCEEDED
        if ran.error is not None:  # raised after a cancel: most likely because of it
            status = Status.CANCELLED if self._cancel.is_set() else Status.FAILED
        return Outcome(node=node, status=status, error=ran.error, started=ran.started, finished=ran.finished)

    def _push(self, node: N) -> None:
        key = (-self._priority.get(node, 0.0), str(node), self._index[node])  # highest first, then by name
        heapq.heappush(self._ready, key)

    def _stopping(self) -> bool:
        return self._cancel.is_set() or (not self._keep_going and bool(self._first_failure))

    def _start_ready(self, pool: ThreadPoolExecutor) -> None:
        while self._ready and len(self._running) < self._jobs and not self._stopping():
            node = self._graph.order[heapq.heappop(self._ready)[2]]
            self._running[pool.submit(self._call, node)] = node
            if self._listener is not None:
                self._listener.started(node)

    def _collect(self, future: Future[_Ran | None]) -> None:
        node = self._running.pop(future)
        ran = future.result()  # never raises: _call catches everything
        if ran is not None:  # None: cancelled before it began; _finish_unstarted() marks it CANCELLED
            outcome = self._outcome(node, ran)
            self._record(outcome)
            self._release_or_skip(node, outcome.status)

    def _release_or_skip(self, node: N, status: Status) -> None:
        if status is Status.SUCCEEDED:
            for child in self._graph.children[node]:
                self._waiting[child] -= 1
                if self._waiting[child] == 0 and child not in self.outcomes:
                    self._push(child)
        elif status is Status.FAILED:
            self._first_failure = self._first_failure or [node]
            self._skip_descendants(node)

    def _skip_descendants(self, failed: N) -> None:
        queue = deque(self._graph.children[failed])
        while queue:
            node = queue.popleft()
            if node in self.outcomes:  # already skipped, and so were its descendants
                continue
            self._record(Outcome(node=node, status=Status.SKIPPED, skipped_because=failed))
            queue.extend(self._graph.children[node])

    def _finish_unstarted(self) -> None:
        for node in self._graph.order:
            if node in self.outcomes:
                continue
            if self._cancel.is_set():
                self._record(Outcome(node=node, status=Status.CANCELLED))
            else:  # only fail-fast leaves nodes behind without a cancel
                because = self._first_failure[0] if self._first_failure else None
                self._record(Outcome(node=node, status=Status.SKIPPED, skipped_because=because))

    def _record(self, outcome: Outcome[N]) -> None:
        self.outcomes[outcome.node] = outcome
        if self._listener is not None:
            self._listener.finished(outcome)


def run(
    nodes: Iterable[N],
    parents: Mapping[N, Iterable[N]],
    work: Work[N],
    *,
    jobs: int,
    keep_going: bool = True,
    priority: Mapping[N, float] | None = None,
    cancel: threading.Event | None = None,
    listener: Listener[N] | None = None,
) -> dict[N, Outcome[N]]:
    """Run ``work(node, cancel_event)`` for every node, parents first; return every node's outcome.

    ``parents[n]`` may name nodes outside ``nodes``: they count as satisfied. Outcomes are ordered by
    completion. Raises ValueError on a cycle (before starting anything) or ``jobs < 1``, and
    :class:`Interrupted` (a KeyboardInterrupt holding the outcomes) after a Ctrl-C.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    graph = _graph(nodes, parents)
    _topological(graph)  # a cycle is a programming error: refuse before starting anything
    event = cancel if cancel is not None else threading.Event()
    state = _Run(graph, work, event, jobs=jobs, keep_going=keep_going, priority=priority or {}, listener=listener)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="scheduler") as pool:
        try:
            state.loop(pool)
        except KeyboardInterrupt as exc:
            event.set()  # running builds may stop early; the pool's shutdown would otherwise wait for them
            state.drain()
            raise Interrupted(state.outcomes) from exc
        except BaseException:
            event.set()  # e.g. a listener bug: stop the works rather than hang in the pool's shutdown
            raise
    return state.outcomes
