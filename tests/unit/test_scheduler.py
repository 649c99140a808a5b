"""The ready-set scheduler: order, concurrency, failures, priority, cancellation and Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.pipeline.scheduler import Interrupted, Outcome, Status, critical_path_priority, run

TIMEOUT = 5.0  # only reached if the scheduler is broken

DIAMOND: dict[str, list[str]] = {"b": ["a"], "c": ["a"], "d": ["b", "c"]}


class Boom(Exception):
    pass


class Recorder:
    """A work function that records what it was called with, thread-safely, and fails on request."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.fail = fail or set()
        self.lock = threading.Lock()
        self.called: list[str] = []

    def work(self, node: str, cancel: threading.Event) -> None:
        with self.lock:
            self.called.append(node)
        if node in self.fail:
            raise Boom(node)


class FakeListener:
    def __init__(
        self,
        on_started: Callable[[str], None] | None = None,
        on_finished: Callable[[Outcome[str]], None] | None = None,
    ) -> None:
        self.started_nodes: list[str] = []
        self.outcomes: list[Outcome[str]] = []
        self._on_started = on_started
        self._on_finished = on_finished

    def started(self, node: str) -> None:
        self.started_nodes.append(node)
        if self._on_started is not None:
            self._on_started(node)

    def finished(self, outcome: Outcome[str]) -> None:
        self.outcomes.append(outcome)
        if self._on_finished is not None:
            self._on_finished(outcome)


def statuses(outcomes: Mapping[str, Outcome[str]]) -> dict[str, Status]:
    return {node: outcome.status for node, outcome in outcomes.items()}


def test_diamond_runs_parents_before_children() -> None:
    recorder = Recorder()
    listener = FakeListener()
    outcomes = run("abcd", DIAMOND, recorder.work, jobs=4, listener=listener)
    assert statuses(outcomes) == dict.fromkeys("abcd", Status.SUCCEEDED)
    assert recorder.called[0] == "a" and recorder.called[-1] == "d"
    for child, parents in DIAMOND.items():
        for parent in parents:
            assert outcomes[child].started >= outcomes[parent].finished  # type: ignore[operator]
    assert sorted(o.node for o in listener.outcomes) == list("abcd")  # finished once per node


def test_jobs_bound_is_respected() -> None:
    lock = threading.Lock()
    running = peak = 0

    def work(node: int, cancel: threading.Event) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.005)
        with lock:
            running -= 1

    outcomes = run(range(12), {}, work, jobs=3)
    assert all(o.status is Status.SUCCEEDED for o in outcomes.values())
    assert 1 <= peak <= 3


def test_independent_branches_run_concurrently() -> None:
    arrived = {"x": threading.Event(), "y": threading.Event()}

    def work(node: str, cancel: threading.Event) -> None:
        arrived[node].set()
        other = "y" if node == "x" else "x"
        if not arrived[other].wait(TIMEOUT):  # only succeeds if both run at once
            raise Boom(f"{other} never started while {node} ran")

    outcomes = run(["x", "y"], {}, work, jobs=2)
    assert statuses(outcomes) == {"x": Status.SUCCEEDED, "y": Status.SUCCEEDED}


def test_failure_skips_exactly_the_descendants_and_independent_branches_finish() -> None:
    parents = {"b": ["a"], "c": ["b"], "d": ["a"], "f": ["e"], "g": ["c", "f"]}
    recorder = Recorder(fail={"b"})
    outcomes = run("abcdefg", parents, recorder.work, jobs=2)
    assert statuses(outcomes) == {
        "a": Status.SUCCEEDED,
        "b": Status.FAILED,
        "c": Status.SKIPPED,
        "d": Status.SUCCEEDED,
        "e": Status.SUCCEEDED,
        "f": Status.SUCCEEDED,
        "g": Status.SKIPPED,
    }
    assert isinstance(outcomes["b"].error, Boom)
    assert outcomes["c"].skipped_because == "b" and outcomes["g"].skipped_because == "b"
    assert outcomes["c"].started is None and "c" not in recorder.called and "g" not in recorder.called


def test_fail_fast_starts_nothing_after_the_failure_but_lets_running_work_finish() -> None:
    failure_seen = threading.Event()
    slow_saw_failure: list[bool] = []

    def on_finished(outcome: Outcome[str]) -> None:
        if outcome.status is Status.FAILED:
            failure_seen.set()

    def work(node: str, cancel: threading.Event) -> None:
        if node == "bad":
            raise Boom(node)
        if node == "slow":  # still running when the scheduler records the failure
            slow_saw_failure.append(failure_seen.wait(TIMEOUT))

    listener = FakeListener(on_finished=on_finished)
    priority = {"bad": 3.0, "slow": 2.0, "later1": 1.0, "later2": 1.0}
    outcomes = run(priority, {}, work, jobs=2, keep_going=False, priority=priority, listener=listener)
    assert sorted(listener.started_nodes) == ["bad", "slow"]
    assert slow_saw_failure == [True]
    assert statuses(outcomes) == {
        "bad": Status.FAILED,
        "slow": Status.SUCCEEDED,
        "later1": Status.SKIPPED,
        "later2": Status.SKIPPED,
    }
    assert outcomes["later1"].skipped_because == "bad"


def test_priority_with_one_job_starts_the_node_on_the_longest_path_first() -> None:
    parents = {"n": ["m"], "o": ["n"]}
    nodes = ["a", "m", "n", "o"]
    priority = critical_path_priority(nodes, parents, {})
    listener = FakeListener()
    run(nodes, parents, Recorder().work, jobs=1, priority=priority, listener=listener)
    assert priority == {"a": 1.0, "m": 3.0, "n": 2.0, "o": 1.0}
    assert listener.started_nodes == ["m", "n", "a", "o"]  # the chain first; a and o tie, broken by name


def test_ties_are_broken_by_name() -> None:
    listener = FakeListener()
    run(["c", "a", "b"], {}, Recorder().work, jobs=1, listener=listener)
    assert listener.started_nodes == ["a", "b", "c"]


def test_critical_path_priority_on_a_hand_made_graph() -> None:
    parents = {"b": ["a"], "c": ["a"], "d": ["b", "c", "outside"]}
    duration = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0, "outside": 100.0}
    assert critical_path_priority("abcde", parents, duration, default=0.5) == {
        "a": 7.0,
        "b": 6.0,
        "c": 3.0,
        "d": 1.0,
        "e": 0.5,
    }


def test_cancel_set_mid_run_running_works_see_it_and_pending_nodes_are_cancelled() -> None:
    cancel = threading.Event()
    both_running = threading.Barrier(3, timeout=TIMEOUT)
    saw_cancel: dict[str, bool] = {}

    def work(node: str, cancel_event: threading.Event) -> None:
        if node in "ac":
            both_running.wait()
            saw_cancel[node] = cancel_event.wait(TIMEOUT)
            if node == "a":
                raise Boom("stopped by the cancel")

    def canceller() -> None:
        both_running.wait()
        cancel.set()

    thread = threading.Thread(target=canceller)
    thread.start()
    outcomes = run("abcd", {"b": ["a"]}, work, jobs=2, cancel=cancel)
    thread.join(TIMEOUT)
    assert saw_cancel == {"a": True, "c": True}
    assert statuses(outcomes) == {
        "a": Status.CANCELLED,
        "b": Status.CANCELLED,
        "c": Status.SUCCEEDED,
        "d": Status.CANCELLED,
    }
    assert isinstance(outcomes["a"].error, Boom)


def test_cancel_already_set_starts_nothing() -> None:
    cancel = threading.Event()
    cancel.set()
    recorder = Recorder()
    outcomes = run("ab", {}, recorder.work, jobs=2, cancel=cancel)
    assert statuses(outcomes) == {"a": Status.CANCELLED, "b": Status.CANCELLED}
    assert recorder.called == []


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler, reason="SIGINT is handled")
def test_ctrl_c_while_waiting_is_reraised_after_running_works_return() -> None:
    main = threading.main_thread().ident
    assert main is not None
    saw_cancel: list[bool] = []

    def work(node: str, cancel: threading.Event) -> None:
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C: lands in the scheduling thread's wait()
        saw_cancel.append(cancel.wait(TIMEOUT))

    with pytest.raises(Interrupted) as caught:
        run("ab", {"b": ["a"]}, work, jobs=1)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert saw_cancel == [True]
    assert statuses(caught.value.outcomes) == {"a": Status.SUCCEEDED, "b": Status.CANCELLED}
    assert caught.value.outcomes["a"].finished is not None


def test_keyboard_interrupt_from_a_listener_keeps_every_outcome() -> None:
    saw_cancel: list[bool] = []

    def work(node: str, cancel: threading.Event) -> None:
        saw_cancel.append(cancel.wait(TIMEOUT))
        raise Boom("interrupted build")

    def on_started(node: str) -> None:
        raise KeyboardInterrupt

    listener = FakeListener(on_started=on_started)
    with pytest.raises(Interrupted) as caught:
        run("abc", {"c": ["a"]}, work, jobs=1, listener=listener)
    assert saw_cancel == [True]
    assert statuses(caught.value.outcomes) == dict.fromkeys("abc", Status.CANCELLED)
    assert isinstance(caught.value.outcomes["a"].error, Boom)


def test_a_listener_error_stops_running_works_and_propagates() -> None:
    def work(node: str, cancel: threading.Event) -> None:
        if not cancel.wait(TIMEOUT):  # would hang the pool's shutdown if the scheduler did not set it
            raise Boom("never cancelled")

    def on_started(node: str) -> None:
        raise RuntimeError("listener bug")

    cancel = threading.Event()
    with pytest.raises(RuntimeError, match="listener bug"):
        run("a", {}, work, jobs=1, cancel=cancel, listener=FakeListener(on_started=on_started))
    assert cancel.is_set()


def test_parents_outside_nodes_are_ignored() -> None:
    recorder = Recorder()
    outcomes = run(["b", "c"], {"b": ["a"], "c": ["b", "z"]}, recorder.work, jobs=2)
    assert statuses(outcomes) == {"b": Status.SUCCEEDED, "c": Status.SUCCEEDED}
    assert recorder.called == ["b", "c"]


def test_cycle_raises_value_error_before_starting_anything() -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match="cycle among: a, b"):
        run("abz", {"a": ["b"], "b": ["a"]}, recorder.work, jobs=2)
    assert recorder.called == []


def test_jobs_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="jobs"):
        run("a", {}, Recorder().work, jobs=0)


@st.composite
def failing_dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]], set[str], int]:
    count = draw(st.integers(1, 12))
    nodes = [f"n{i}" for i in range(count)]
    edges = draw(st.sets(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)), max_size=30))
    parents: dict[str, list[str]] = {}
    for low, high in edges:
        if low < high:  # edges point from a lower to a higher index: acyclic
            parents.setdefault(nodes[high], []).append(nodes[low])
    fail = draw(st.sets(st.sampled_from(nodes)))
    return draw(st.permutations(nodes)), parents, fail, draw(st.integers(1, 4))


def ancestors_of(node: str, parents: Mapping[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(parents.get(node, []))
    while stack:
        parent = stack.pop()
        if parent not in seen:
            seen.add(parent)
            stack.extend(parents.get(parent, []))
    return seen


@settings(max_examples=150, deadline=None)
@given(failing_dags())
def test_random_dags_with_failures_give_consistent_outcomes(
    case: tuple[list[str], dict[str, list[str]], set[str], int],
) -> None:
    nodes, parents, fail, jobs = case
    recorder = Recorder(fail=fail)
    outcomes = run(nodes, parents, recorder.work, jobs=jobs)
    assert sorted(outcomes) == sorted(nodes)
    assert len(recorder.called) == len(set(recorder.called))
    for node, outcome in outcomes.items():
        mine = parents.get(node, [])
        ancestors = ancestors_of(node, parents)
        failed_ancestors = {a for a in ancestors if outcomes[a].status is Status.FAILED}
        ran = node in recorder.called
        assert ran == (outcome.started is not None)
        if outcome.status is Status.SUCCEEDED:
            assert all(outcomes[p].status is Status.SUCCEEDED for p in mine)
        if outcome.status is Status.FAILED:
            assert node in fail and ran and isinstance(outcome.error, Boom)
        assert (outcome.status is Status.SKIPPED) == (bool(failed_ancestors) and not ran)
        if outcome.status is Status.SKIPPED:
            assert outcome.skipped_because in failed_ancestors
        assert outcome.status is not Status.CANCELLED
        if ran:
            assert all(outcome.started >= outcomes[p].finished for p in mine)  # type: ignore[operator]
