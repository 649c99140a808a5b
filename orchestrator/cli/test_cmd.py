"""``orchestrator test``: build the images the selected ``image_test()`` targets need, then check them.

    select tests -> resolve their images -> build (the build pipeline of ``orchestrator build``)
                 -> per (test, platform): the cached results, or the checks run on the content tag
                 -> one line per check, a summary, JUnit XML

Exit codes: 0 every check passed, 4 a check failed, 1 an image a test needs failed to build (its
tests are reported as errors), 2 usage or engine errors, 3 a pattern selected no test.
The build machinery is imported only when the command runs (as ``build_cmd`` does).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import handle_errors, load_workspace, options
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
from orchestrator.imagetest.probe import DEFAULT_TIMEOUT_S
from orchestrator.label import Label, Pattern, looks_like_label
from orchestrator.model import ImageTestTarget, Node
from orchestrator.platforms import normalize

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.build import BuildOptions, BuildSummary
    from orchestrator.cache.store import Store
    from orchestrator.cli.build_run import Engine
    from orchestrator.imagetest.checks import CheckResult
    from orchestrator.imagetest.probe import ContainerProbe
    from orchestrator.imagetest.results import ResultCache
    from orchestrator.loading import LoadedWorkspace


@handle_errors
def test(
    ctx: typer.Context,
    patterns: Annotated[list[str] | None, typer.Argument(help="image_test patterns (default //...)")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here")] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Builds, and tests, at once (default: cores)")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every check again (images still come from the build cache)")
    ] = False,
    platform: Annotated[
        list[str] | None,
        typer.Option("--platform", help="Only this platform, e.g. linux/arm64 (repeatable; default: each test's)"),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds a command may run before it is killed and fails")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Run the selected image_test() checks against their images, building those first."""
    command = ImageTestOptions(
        patterns=tuple(patterns or ()),
        junit=junit,
        jobs=jobs or os.cpu_count() or 1,
        no_cache=no_cache,
        platforms=tuple(normalize(p) for p in platform or ()),
        timeout_s=timeout,
    )
    from orchestrator.cli.build_run import _sigterm_stops_cleanly

    with _sigterm_stops_cleanly():
        raise typer.Exit(_run(ctx, command))


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageTestOptions:
    """What ``orchestrator test`` was asked, as parsed by typer."""

    patterns: tuple[str, ...]
    junit: Path | None
    jobs: int
    no_cache: bool
    platforms: tuple[str, ...]
    timeout_s: float


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


# --- selection ------------------------------------------------------------------------------------


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


# --- the command ----------------------------------------------------------------------------------


def _run(ctx: typer.Context, command: ImageTestOptions) -> int:
    from rich.console import Console

    from orchestrator.build import BuildOptions, Terminated
    from orchestrator.cache.store import Store
    from orchestrator.cli.build_run import _connect
    from orchestrator.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
    from orchestrator.executor.docker_probe import DockerProbe

    loaded = load_workspace(ctx)
    jobs = plan_jobs(loaded, select_tests(loaded, command.patterns), command.platforms)
    cache_dir = loaded.workspace.cache_dir(options(ctx).cache_dir)
    build_options = BuildOptions(
        jobs=command.jobs,
        keep_going=True,
        platforms=tuple(sorted({job.platform for job in jobs})),
        load=True,  # a node the registry cache holds is pulled: its tests need it in the engine
    )
    console = Console(stderr=True)
    # Talking to the engine waits mostly on the daemon: on a thread while the keys are computed.
    with ThreadPoolExecutor(max_workers=1) as pool, Store(cache_dir) as store:
        engine_future = pool.submit(_connect)
        summary = _build(loaded, store, cache_dir, build_options, console, engine_future, jobs)
        if summary.interrupted:
            return summary.exit_code
        probe = DockerProbe()
        try:
            outcomes = _test(jobs, summary, store, probe, command)
        except KeyboardInterrupt as stop:
            typer.echo("interrupted: the running checks finished, the others did not run", err=True)
            return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
        finally:
            probe.close()
    code = exit_code(outcomes)
    _print_summary(outcomes, code)
    if command.junit is not None:
        _write_junit(command.junit, outcomes)
        typer.echo(f"JUnit XML written to {command.junit}")
    return code


def _build(
    loaded: LoadedWorkspace,
    store: Store,
    cache_dir: Path,
    build_options: BuildOptions,
    console: Console,
    engine_future: Future[Engine],
    jobs: Sequence[Job],
) -> BuildSummary:
    """Build the tests' images as ``orchestrator build`` does (what is cached is not built again)."""
    from orchestrator.build import Build
    from orchestrator.cli.build_run import BuildCommand, _remote_cache
    from orchestrator.emulation import check_emulation
    from orchestrator.report.console import ConsoleDisplay, print_summary

    labels = sorted({job.image for job in jobs})
    remote = _remote_cache(
        loaded,
        BuildCommand(patterns=None, jobs=None, keep_going=True, no_cache=False, dry_run=False, since=None, report=None),
    )
    display = ConsoleDisplay(console)
    build = Build(loaded, store, cache_dir, None, build_options, display, remote)
    keys = build.compute_keys(labels)
    engine = engine_future.result()
    build.executor = engine.executor
    plan = build.plan(labels, keys, images=engine.images)
    if remote is not None:
        for warning in remote.warnings:
            console.print(f"[yellow]WARNING[/] {warning}", highlight=False)
    for planned in plan.nodes:
        if planned.poisoned:
            console.print(f"[yellow]WARNING[/] {planned.node}: {planned.reason}", highlight=False)
    if engine.executor.is_local():
        # A command on a foreign platform runs under emulation, as that platform's builds do.
        run_here = {p.node.platform for p in plan.to_build} | {j.platform for j in jobs if _has_commands(j.test)}
        check_emulation(run_here, engine.executor.native_platform())
    try:
        summary = build.run(plan)
    finally:
        display.stop()
    print_summary(console, summary)
    return summary


def _has_commands(test: ImageTestTarget) -> bool:
    from orchestrator.imagetest.spec import parse_spec

    return bool(parse_spec(test.spec)["commands"])


def _test(
    jobs: Sequence[Job], summary: BuildSummary, store: Store, probe: ContainerProbe, command: ImageTestOptions
) -> list[JobOutcome]:
    """Every job's outcome: cached results, checks run (up to ``command.jobs`` at once), or an error."""
    from orchestrator.build import NodeStatus
    from orchestrator.imagetest.results import ResultCache, result_key

    cache = ResultCache(store)
    reports = {r.node: r for r in summary.reports}
    planned = summary.plan.by_node()
    outcomes: list[JobOutcome] = []
    to_run: list[tuple[Job, str, str]] = []  # (job, content-tagged image, result key)
    for job in jobs:
        report = reports.get(job.node)
        if report is None or report.status not in (NodeStatus.BUILT, NodeStatus.CACHED, NodeStatus.PULLED):
            outcomes.append(_not_built(job, summary))
            _print_outcome(outcomes[-1])
            continue
        key = result_key(report.key, job.platform, job.test.spec)
        hit = None if command.no_cache else cache.get(key)
        if hit is not None:
            outcomes.append(JobOutcome(job=job, results=hit.results, cached=True, ran_at=hit.ran_at))
            _print_outcome(outcomes[-1])
            continue
        to_run.append((job, planned[job.node].image, key))
    outcomes += _run_checks(to_run, cache, probe, command)
    return sorted(outcomes, key=lambda o: (o.job.test.label, o.job.platform))


def _run_checks(
    to_run: Sequence[tuple[Job, str, str]], cache: ResultCache, probe: ContainerProbe, command: ImageTestOptions
) -> list[JobOutcome]:
    from orchestrator.executor.api import DaemonUnavailable
    from orchestrator.imagetest.checks import run_checks
    from orchestrator.imagetest.results import now
    from orchestrator.imagetest.spec import parse_spec

    def check(job: Job, image: str) -> list[CheckResult]:
        return run_checks(parse_spec(job.test.spec), image, job.platform, probe, timeout_s=command.timeout_s)

    outcomes = []
    with ThreadPoolExecutor(max_workers=command.jobs, thread_name_prefix="test") as pool:
        running: dict[Future[list[CheckResult]], tuple[Job, str]] = {
            pool.submit(check, job, image): (job, key) for job, image, key in to_run
        }
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job, key = running.pop(future)
                    try:
                        results = future.result()
                    except DaemonUnavailable:
                        raise
                    except OrchestratorError as exc:  # the engine refused; the other tests go on
                        outcome = JobOutcome(job=job, error=str(exc), error_case="checks", exit_code=EXIT_USAGE)
                    else:
                        ran_at = now()
                        cache.put(key, results, ran_at)  # here, in one thread, not in the workers
                        outcome = JobOutcome(job=job, results=tuple(results), ran_at=ran_at)
                    _print_outcome(outcome)
                    outcomes.append(outcome)
        except BaseException:
            # Ctrl-C or the daemon gone: start nothing more; running checks finish and remove their containers.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return outcomes


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


# --- output ---------------------------------------------------------------------------------------


def _print_outcome(outcome: JobOutcome) -> None:
    """One line per check (PASS/FAIL), or one ERROR line for a job that could not run."""
    job = outcome.job
    if outcome.error is not None:
        typer.echo(f"{typer.style('ERROR', fg='red', bold=True)} {job}: {outcome.error}")
        return
    cached = " (cached)" if outcome.cached else ""
    for result in outcome.results:
        if result.passed:
            typer.echo(f"{typer.style('PASS', fg='green')} {job} {result.name}{cached}")
        else:
            typer.echo(f"{typer.style('FAIL', fg='red', bold=True)} {job} {result.name}: {result.message}{cached}")


def _print_summary(outcomes: Sequence[JobOutcome], code: int) -> None:
    checks = [r for o in outcomes for r in o.results]
    failed_checks = sum(1 for r in checks if not r.passed)
    errors = sum(1 for o in outcomes if o.error is not None)
    failed = sum(1 for o in outcomes if o.failed)
    cached = sum(1 for o in outcomes if o.cached)
    typer.echo(
        f"{len(outcomes)} test runs: {len(outcomes) - failed - errors} passed, {failed} failed, {errors} errors "
        f"({cached} cached); {len(checks) - failed_checks} checks passed, {failed_checks} failed; exit {code}"
    )


def _write_junit(path: Path, outcomes: Sequence[JobOutcome]) -> None:
    from orchestrator.imagetest.junit import image_test_error_suite, image_test_suite, write_junit

    suites = []
    for o in outcomes:
        label, platform = o.job.test.label, o.job.platform
        if o.error is not None:
            suites.append(image_test_error_suite(label, platform, o.error_case, o.error, o.error_details))
        else:
            suites.append(image_test_suite(label, platform, o.results, cached=o.cached, ran_at=o.ran_at))
    write_junit(path, suites)
