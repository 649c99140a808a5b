"""run_jobs: image-test jobs on the shared scheduler, against the in-memory probe (no daemon)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from orchestrator.cache.store import Store
from orchestrator.cli.session import sigterm_stops_cleanly
from orchestrator.core.label import Label
from orchestrator.core.model import ImageTestTarget
from orchestrator.core.testspec import canonical_spec
from orchestrator.engine.api import DaemonUnavailable
from orchestrator.engine.probe import CommandRun
from orchestrator.errors import EXIT_USAGE
from orchestrator.imagetest.runner import Job, JobOutcome, RunOptions, exit_code, run_jobs
from orchestrator.pipeline.options import Terminated
from orchestrator.pipeline.plan import Action, Plan, PlannedNode
from orchestrator.pipeline.summary import BuildSummary, NodeReport, NodeStatus
from tests.fakes.probe import FakeImage, FakeProbe

HI = CommandRun(exit_code=0, stdout="hi\n", stderr="", duration_s=0.25)


def job(name: str) -> Job:
    command = {"name": "hi", "command": ["echo", "hi"], "expected_output": ["^hi$"]}
    test = ImageTestTarget(
        label=Label("tests", name),
        image=f"//app:{name}",
        spec=canonical_spec(f"image_test(name={name!r})", [command], [], None),
        platforms=None,
        build_file="tests/BUILD",
    )
    return Job(test=test, image=Label("app", name), platform="linux/amd64")


def key(j: Job) -> str:
    """The image's key: one per image, so that each job has its own result key."""
    return j.image.name.rjust(32, "0")


def image(j: Job) -> str:
    return f"{j.image.name}:key-{key(j)}"


def built(jobs: Sequence[Job]) -> BuildSummary:
    """A build in which every job's image was built."""
    planned = tuple(
        PlannedNode(node=j.node, key=key(j), image=image(j), action=Action.BUILD, reason="test", record=None)
        for j in jobs
    )
    reports = tuple(NodeReport(node=j.node, key=key(j), status=NodeStatus.BUILT, reason="test") for j in jobs)
    return BuildSummary(
        plan=Plan(nodes=planned, selected=frozenset(j.image for j in jobs)), reports=reports, promoted=()
    )


def probe_for(jobs: Sequence[Job], probe: FakeProbe | None = None) -> FakeProbe:
    fake = probe if probe is not None else FakeProbe()
    for j in jobs:
        fake.add(image(j), FakeImage(commands={("echo", "hi"): HI}))
    return fake


class GatedProbe(FakeProbe):
    """Counts the commands running at once; each waits until ``together`` of them run (or a timeout)."""

    def __init__(self, together: int) -> None:
        super().__init__()
        self.most = 0
        self._running = 0
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(together)

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        user: str | None,
        platform: str,
        timeout_s: float,
    ) -> CommandRun:
        with self._lock:
            self._running += 1
            self.most = max(self.most, self._running)
        with contextlib.suppress(threading.BrokenBarrierError):  # fewer ran at once: ``most`` says how many
            self._barrier.wait(timeout=0.5)
        time.sleep(0.02)  # a check started over the limit would overlap these
        with self._lock:
            self._running -= 1
        return super().run(image, command, env=env, user=user, platform=platform, timeout_s=timeout_s)


class SignallingProbe(FakeProbe):
    """Sends ``signum`` to this process during the first command, which then still finishes."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self._signum = signum

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        user: str | None,
        platform: str,
        timeout_s: float,
    ) -> CommandRun:
        if not self.runs:
            os.kill(os.getpid(), self._signum)
            time.sleep(0.2)  # the scheduling thread is interrupted while this check runs
        return super().run(image, command, env=env, user=user, platform=platform, timeout_s=timeout_s)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "cache") as opened:
        yield opened


def run(jobs: Sequence[Job], store: Store, probe: FakeProbe, *, at_once: int = 1) -> tuple[list[JobOutcome], list[str]]:
    """The outcomes, and the jobs in the order their outcomes were reported."""
    heard: list[str] = []
    options = RunOptions(jobs=at_once, no_cache=False, timeout_s=5)
    outcomes = run_jobs(jobs, built(jobs), store, probe, options, lambda o: heard.append(str(o.job)))
    return outcomes, heard


def test_no_more_checks_run_at_once_than_the_jobs_limit(store: Store) -> None:
    jobs = [job(f"t{i}") for i in range(6)]
    probe = probe_for(jobs, GatedProbe(together=2))
    outcomes, _ = run(jobs, store, probe, at_once=2)
    assert probe.most == 2
    assert [o.job for o in outcomes] == jobs and not any(o.failed or o.error for o in outcomes)


def test_one_job_at_a_time_runs_and_reports_the_checks_in_the_jobs_order(store: Store) -> None:
    jobs = [job(name) for name in ("b", "a", "c")]  # not sorted: the caller's order is kept
    probe = probe_for(jobs)
    outcomes, heard = run(jobs, store, probe)
    assert [r.image for r in probe.runs] == [image(j) for j in jobs]
    assert heard == [str(j) for j in jobs]
    assert [o.job.test.label.name for o in outcomes] == ["a", "b", "c"]  # returned sorted


def test_results_are_cached_and_cached_jobs_are_reported_before_checks_run(store: Store) -> None:
    first = [job("a")]
    probe = probe_for([*first, job("b")])
    (fresh,), _ = run(first, store, probe)
    assert not fresh.cached and fresh.ran_at is not None

    outcomes, heard = run([job("b"), *first], store, probe)
    assert heard == [str(job("a")), str(job("b"))]  # the cached one at once, then the check that ran
    assert [(o.job.test.label.name, o.cached) for o in outcomes] == [("a", True), ("b", False)]
    assert outcomes[0].results == fresh.results and outcomes[0].ran_at == fresh.ran_at
    assert [r.image for r in probe.runs] == [image(job("a")), image(job("b"))]


def test_an_engine_refusal_is_that_jobs_error_and_the_other_jobs_go_on(store: Store) -> None:
    jobs = [job("a"), job("b"), job("c")]
    probe = probe_for([jobs[0], jobs[2]])  # the engine has no image for b
    outcomes, heard = run(jobs, store, probe)
    refused = outcomes[1]
    assert refused.error == f"the fake engine has no image {image(jobs[1])}"
    assert (refused.error_case, refused.exit_code) == ("checks", EXIT_USAGE)
    assert heard == [str(j) for j in jobs] and exit_code(outcomes) == EXIT_USAGE
    again, _ = run(jobs, store, probe_for(jobs))
    assert [o.cached for o in again] == [True, False, True]  # the refusal was not cached


class GoneProbe(FakeProbe):
    """The daemon stops answering: every command raises DaemonUnavailable (once recorded)."""

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        user: str | None,
        platform: str,
        timeout_s: float,
    ) -> CommandRun:
        super().run(image, command, env=env, user=user, platform=platform, timeout_s=timeout_s)
        raise DaemonUnavailable("the Docker daemon is not running")


def test_the_daemon_gone_is_raised_and_no_other_check_starts(store: Store) -> None:
    jobs = [job("a"), job("b")]
    probe = probe_for(jobs, GoneProbe())
    heard: list[str] = []
    options = RunOptions(jobs=1, no_cache=False, timeout_s=5)
    with pytest.raises(DaemonUnavailable, match="not running"):
        run_jobs(jobs, built(jobs), store, probe, options, lambda o: heard.append(str(o.job)))
    assert [r.image for r in probe.runs] == [image(jobs[0])] and heard == []


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_an_interrupt_lets_the_running_check_finish_and_runs_no_other(
    store: Store, signum: int, raised: type[KeyboardInterrupt]
) -> None:
    jobs = [job("a"), job("b"), job("c")]
    probe = probe_for(jobs, SignallingProbe(signum))
    heard: list[str] = []
    options = RunOptions(jobs=1, no_cache=False, timeout_s=5)
    with sigterm_stops_cleanly(), pytest.raises(KeyboardInterrupt) as stopped:
        run_jobs(jobs, built(jobs), store, probe, options, lambda o: heard.append(str(o.job)))
    assert type(stopped.value) is raised  # the CLI tells exit 130 from 143 by it
    assert [r.image for r in probe.runs] == [image(jobs[0])]  # it finished; the others never started
    assert heard == []
    again, _ = run(jobs, store, probe_for(jobs))
    assert not any(o.cached for o in again)  # nothing was cached after the interrupt
