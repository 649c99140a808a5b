"""Running image tests: which (test, platform) jobs to run, their cached results, the checks.

    select_tests -> plan_jobs -> run_jobs (cached results, or checks run on the shared scheduler) -> exit_code

Nothing here builds or prints: the command builds the images first and passes the build's summary,
and a callback hears of each outcome as it comes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from orchestrator.cache.store import Store
from orchestrator.core.label import Label, Pattern, looks_like_label
from orchestrator.core.model import ImageTestTarget, Node
from orchestrator.core.platforms import normalize
from orchestrator.core.testspec import parse_spec
from orchestrator.engine.api import DaemonUnavailable
from orchestrator.engine.probe import ContainerProbe
from orchestrator.errors import (
    EXIT_BUILD_FAILED,
    EXIT_OK,
    EXIT_TEST_FAILED,
    EXIT_USAGE,
    GraphError,
    Location,
    NothingMatchedError,
    OrchestratorError,
    UnknownTargetError,
    did_you_mean,
)
from orchestrator.imagetest.checks import CheckResult, run_checks
from orchestrator.imagetest.results import ResultCache, now, result_key
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.summary import BuildSummary, NodeStatus
from orchestrator.workspace.loading import LoadedWorkspace

OK_IMAGES = (NodeStatus.BUILT, NodeStatus.CACHED, NodeStatus.PULLED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One test on one platform of its image."""

    test: ImageTestTarget
    image: Label  # the target whose image the test checks
    platform: str

    @property
    def node(self) -> Node:
        return Node(self.image, self.platform)

    def __str__(self) -> str:
        return f"{self.test.label} {self.platform}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOutcome:
    job: Job
    results: tuple[CheckResult, ...] = ()
    cached: bool = False
    ran_at: str | None = None
    error: str | None = None  # the checks could not run (the image failed to build, the engine refused)
    error_case: str = ""  # the JUnit case the error is reported as
    error_details: str | None = None  # the JUnit error's text (a failed build's log tail)
    exit_code: int = EXIT_OK  # what the error means for the command's exit code

    @property
    def failed(self) -> bool:
        return any(not r.passed for r in self.results)


def select_tests(loaded: LoadedWorkspace, patterns: Sequence[str]) -> list[ImageTestTarget]:
    """The image tests matching any pattern (default ``//...``), sorted; each pattern must match one."""
    tests = {t.label: t for package in loaded.packages for t in package.tests}
    chosen: set[Label] = set()
    for text in patterns or ["//..."]:
        if not looks_like_label(text):
            raise UnknownTargetError(f"{text!r} is not a label or pattern of image tests (expected //package:name)")
        pattern = Pattern.parse(text)
        if pattern.name is not None and not pattern.recursive:
            chosen.add(_known_test(Label(pattern.package, pattern.name), tests, loaded))
            continue
        matched = [label for label in tests if pattern.matches(label)]
        if not matched:
            raise NothingMatchedError(f"pattern {text} matches no image_test")
        chosen.update(matched)
    return [tests[label] for label in sorted(chosen)]


def _known_test(label: Label, tests: dict[Label, ImageTestTarget], loaded: LoadedWorkspace) -> Label:
    if label in tests:
        return label
    hint = did_you_mean(str(label), [str(t) for t in tests])
    if label in loaded.graph.targets:
        of_it = [str(name) for name in sorted(tests) if _resolves_to(loaded, tests[name], label)]
        hint += f"; {label} is an image, not an image_test" + (f" (its tests: {', '.join(of_it)})" if of_it else "")
    raise UnknownTargetError(f"no image_test {label}{hint}")


def _resolves_to(loaded: LoadedWorkspace, test: ImageTestTarget, label: Label) -> bool:
    try:
        return loaded.graph.resolve(test.image) == label
    except OrchestratorError:
        return False


def plan_jobs(loaded: LoadedWorkspace, tests: Sequence[ImageTestTarget], platforms: Sequence[str]) -> list[Job]:
    """Each test on each of its platforms (only ``platforms``' when given), its image resolved."""
    graph = loaded.graph
    jobs = []
    for test in tests:
        try:
            image = graph.resolve(test.image)
        except UnknownTargetError as exc:
            raise UnknownTargetError(
                f"image_test {test.label}: image {test.image!r}: {exc.message}", location=Location(test.build_file)
            ) from None
        built_for = graph.platforms_of(image)
        wanted = sorted({normalize(p) for p in test.platforms}) if test.platforms else list(built_for)
        missing = [p for p in wanted if p not in built_for]
        if missing:
            raise GraphError(
                f"image_test {test.label} asks for {', '.join(missing)} but {image} is built only for "
                f"{', '.join(built_for)}; add the platform to the image or remove it from the test",
                location=Location(test.build_file),
            )
        jobs += [Job(test=test, image=image, platform=p) for p in wanted if not platforms or p in platforms]
    if not jobs:
        raise NothingMatchedError(f"no selected image_test runs on {', '.join(platforms)}")
    return sorted(jobs, key=lambda job: (job.test.label, job.platform))


def tests_changed_since(loaded: LoadedWorkspace, tests: Sequence[ImageTestTarget], since: str) -> list[ImageTestTarget]:
    """The tests whose image is affected since git revision ``since``, or whose BUILD file changed."""
    from orchestrator.graph import query
    from orchestrator.keys.changes import targets_changed_since
    from orchestrator.workspace.vcs import changed_files

    affected = query.affected(loaded.graph, targets_changed_since(loaded, since))
    changed = set(changed_files(loaded.root, since))
    package_files = {p.package: {p.build_file, *p.loads} for p in loaded.packages}
    return [
        test
        for test in tests
        if loaded.graph.resolve(test.image) in affected or package_files.get(test.label.package, set()) & changed
    ]


def has_commands(test: ImageTestTarget) -> bool:
    """Whether the test runs commands (a foreign platform then needs its emulator)."""
    return bool(parse_spec(test.spec)["commands"])


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    jobs: int  # tests at once
    no_cache: bool  # run every check again
    timeout_s: float  # per command


def run_jobs(
    jobs: Sequence[Job],
    summary: BuildSummary,
    store: Store,
    probe: ContainerProbe,
    options: RunOptions,
    on_outcome: Callable[[JobOutcome], None],
) -> list[JobOutcome]:
    """Every job's outcome: cached results, checks run (up to ``options.jobs`` at once), or an error."""
    cache = ResultCache(store)
    reports = {r.node: r for r in summary.reports}
    planned = summary.plan.by_node()
    outcomes: list[JobOutcome] = []
    to_run: list[tuple[Job, str, str]] = []  # (job, content-tagged image, result key)
    for job in jobs:
        report = reports.get(job.node)
        if report is None or report.status not in OK_IMAGES:
            outcomes.append(_not_built(job, summary))
            on_outcome(outcomes[-1])
            continue
        key = result_key(report.key, job.platform, job.test.spec)
        hit = None if options.no_cache else cache.get(key)
        if hit is not None:
            outcomes.append(JobOutcome(job=job, results=hit.results, cached=True, ran_at=hit.ran_at))
            on_outcome(outcomes[-1])
            continue
        to_run.append((job, planned[job.node].image, key))
    outcomes += _run_checks(to_run, cache, probe, options, on_outcome)
    return sorted(outcomes, key=lambda o: (o.job.test.label, o.job.platform))


def _run_checks(
    to_run: Sequence[tuple[Job, str, str]],
    cache: ResultCache,
    probe: ContainerProbe,
    options: RunOptions,
    on_outcome: Callable[[JobOutcome], None],
) -> list[JobOutcome]:
    """The jobs' checks on the shared scheduler: jobs without parents, fail-fast on the daemon gone."""
    images = {job: image for job, image, _ in to_run}
    checked: dict[Job, JobOutcome] = {}  # filled by worker threads, each its own job

    def check(job: Job, cancel: threading.Event) -> None:
        try:
            results = run_checks(
                parse_spec(job.test.spec), images[job], job.platform, probe, timeout_s=options.timeout_s
            )
        except DaemonUnavailable:
            raise  # a FAILED node: fail-fast starts no other check, and run_jobs raises it
        except OrchestratorError as exc:  # the engine refused; the other tests go on
            checked[job] = JobOutcome(job=job, error=str(exc), error_case="checks", exit_code=EXIT_USAGE)
        else:
            checked[job] = JobOutcome(job=job, results=tuple(results))

    cancel = threading.Event()
    report = _Report(checked, {job: key for job, _, key in to_run}, cache, cancel, on_outcome)
    try:
        outcomes = scheduler.run(
            images,
            {},
            check,
            jobs=options.jobs,
            keep_going=False,
            priority={job: -float(i) for i, job in enumerate(images)},  # started in the jobs' order, as a queue would
            cancel=cancel,
            listener=report,
        )
    except scheduler.Interrupted as stop:
        # Ctrl-C or SIGTERM, once the running checks finished: the caller tells the two apart.
        interrupt = stop.__cause__
        raise (interrupt if isinstance(interrupt, KeyboardInterrupt) else stop) from None
    failure = next((o.error for o in outcomes.values() if o.status is scheduler.Status.FAILED), None)
    if failure is not None:  # the daemon gone (or a bug): the first one, once the running checks finished
        raise failure
    return report.outcomes


class _Report:
    """The scheduler's listener: caches and reports each job's outcome, in the scheduling thread."""

    def __init__(
        self,
        checked: Mapping[Job, JobOutcome],
        keys: Mapping[Job, str],
        cache: ResultCache,
        cancel: threading.Event,
        on_outcome: Callable[[JobOutcome], None],
    ) -> None:
        self.outcomes: list[JobOutcome] = []
        self._checked, self._keys, self._cache = checked, keys, cache
        self._cancel, self._on_outcome = cancel, on_outcome
        self._failed = False

    def started(self, node: Job) -> None:
        pass

    def finished(self, outcome: scheduler.Outcome[Job]) -> None:
        if outcome.status is not scheduler.Status.SUCCEEDED:
            self._failed = True  # a check raised, or the run stops: nothing more is reported
            return
        # After Ctrl-C or a failure, checks that were running finish unreported and uncached, as before.
        if self._failed or self._cancel.is_set():
            return
        job = outcome.node
        result = self._checked[job]
        if result.error is None:
            ran_at = now()
            self._cache.put(self._keys[job], result.results, ran_at)  # here, in one thread, not in the workers
            result = replace(result, ran_at=ran_at)
        self._on_outcome(result)
        self.outcomes.append(result)


def _not_built(job: Job, summary: BuildSummary) -> JobOutcome:
    """A job whose image is missing: the build failed, was skipped, or left it in the registry only."""
    report = next((r for r in summary.reports if r.node == job.node), None)
    details = None
    if report is None:
        error = f"image {job.node} was not built"
    elif report.error:
        error = f"image {job.node} failed to build: {report.error.removeprefix(f'{job.node}: ')}"
        details = report.log_tail
    else:
        error = f"image {job.node} was not built ({report.reason})"
    if report is not None and report.log:
        error += f"; full log: {report.log}"
    return JobOutcome(
        job=job, error=error, error_case=f"build {job.node}", error_details=details, exit_code=EXIT_BUILD_FAILED
    )


def exit_code(outcomes: Sequence[JobOutcome]) -> int:
    """2 when the engine refused, else 1 when an image failed to build, else 4 when a check failed."""
    codes = {o.exit_code for o in outcomes if o.error is not None}
    for code in (EXIT_USAGE, EXIT_BUILD_FAILED):
        if code in codes:
            return code
    return EXIT_TEST_FAILED if any(o.failed for o in outcomes) else EXIT_OK
