"""``orchestrator test``: build the images the selected ``image_test()`` targets need, then check them.

    select tests -> resolve their images -> build (the build pipeline of ``orchestrator build``)
                 -> per (test, platform): the cached results, or the checks run on the content tag
                 -> one line per check, a summary, JUnit XML, the CI step summary

Exit codes: 0 every check passed, 4 a check failed, 1 an image a test needs failed to build (its
tests are reported as errors), 2 usage or engine errors, 3 a pattern selected no test.
The build machinery is imported only when the command runs (as ``build_cmd`` does).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import (
    EngineTimeoutOpt,
    ExecutorOpt,
    RegistryOpt,
    RemoteCacheWriteOpt,
    RequireRegistryOpt,
    connecting,
    engine_specs,
    handle_errors,
    load_workspace,
    options,
    stderr_console,
)
from orchestrator.core.platforms import canonical_all
from orchestrator.engine.probe import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from orchestrator.imagetest.runner import JobOutcome
    from orchestrator.pipeline.summary import BuildSummary


@handle_errors
def test(
    ctx: typer.Context,
    patterns: Annotated[list[str] | None, typer.Argument(help="image_test patterns (default //...)")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here")] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Builds, and tests, at once (default: the engine's jobs, else cores)"),
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
    registry: RegistryOpt = None,
    require_registry: RequireRegistryOpt = None,
    remote_cache_write: RemoteCacheWriteOpt = True,
    engine_timeout: EngineTimeoutOpt = None,
    executor: ExecutorOpt = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only tests of images affected since this git revision, or whose BUILD changed"),
    ] = None,
) -> None:
    """Run the selected image_test() checks against their images, building those first."""
    from orchestrator.cli.session import sigterm_stops_cleanly

    command = ImageTestOptions(
        patterns=tuple(patterns or ()),
        junit=junit,
        jobs=jobs,
        no_cache=no_cache,
        platforms=canonical_all(platform or (), given_as="--platform"),
        timeout_s=timeout,
        registry=registry,
        require_registry=require_registry,
        remote_cache_write=remote_cache_write,
        since=since,
        engine_timeout_s=engine_timeout,
        executor=None if executor is None else executor.value,
    )
    with sigterm_stops_cleanly():
        raise typer.Exit(_run(ctx, command))


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageTestOptions:
    """What ``orchestrator test`` was asked, as parsed by typer."""

    patterns: tuple[str, ...]
    junit: Path | None
    jobs: int | None  # None: the engine's jobs, else the cores here
    no_cache: bool
    platforms: tuple[str, ...]
    timeout_s: float
    registry: str | None = None
    require_registry: bool | None = None  # None: WORKSPACE's require_registry
    remote_cache_write: bool = True
    since: str | None = None
    engine_timeout_s: float | None = None
    executor: str | None = None  # auto | buildkit | classic; None: WORKSPACE's executor


def _run(ctx: typer.Context, command: ImageTestOptions) -> int:
    from orchestrator.cache.store import Store
    from orchestrator.cli.session import run_on_console
    from orchestrator.engine.local import closed_at_end, connect, docker_probe
    from orchestrator.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
    from orchestrator.imagetest.runner import (
        RunOptions,
        exit_code,
        has_commands,
        plan_jobs,
        run_jobs,
        select_tests,
        tests_changed_since,
    )
    from orchestrator.pipeline.options import BuildOptions, Terminated
    from orchestrator.pipeline.run import Request, remote_cache
    from orchestrator.report.console import print_summary
    from orchestrator.report.summary import image_tests_markdown, write_step_summary

    loaded = load_workspace(ctx)
    tests = select_tests(loaded, command.patterns)
    if command.since is not None:
        tests = tests_changed_since(loaded, tests, command.since)
        if not tests:
            typer.echo(f"no selected image test is affected since {command.since}")
            return 0
    specs = engine_specs(ctx, loaded)
    spec = specs[0] if specs else None  # the home engine: the image tests run there
    at_once = command.jobs or (spec.jobs if spec is not None else None) or os.cpu_count() or 1
    jobs = plan_jobs(loaded, tests, command.platforms)
    cache_dir = loaded.workspace.cache_dir(options(ctx).cache_dir)
    build_options = BuildOptions(
        jobs=at_once,
        jobs_given=command.jobs,
        keep_going=True,
        platforms=tuple(sorted({job.platform for job in jobs})),
        load=True,  # a node the registry cache holds is pulled: its tests need it in the engine
        engine_timeout_s=command.engine_timeout_s or loaded.workspace.settings.engine_timeout_s,
        executor=command.executor,
    )
    remote = remote_cache(loaded, command.registry, write=command.remote_cache_write, required=command.require_registry)
    console = stderr_console()
    request = Request(
        labels=sorted({job.image for job in jobs}),
        options=build_options,
        # A command on a foreign platform runs under emulation, as that platform's builds do.
        commands_on=frozenset(j.platform for j in jobs if has_commands(j.test)),
    )
    # Talking to the engine waits mostly on the daemon: on a thread while the keys are computed.
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        Store(cache_dir) as store,
        closed_at_end(connecting(pool, specs, connect)) as engine_future,
    ):
        result = run_on_console(
            console,
            loaded=loaded,
            store=store,
            cache_dir=cache_dir,
            request=request,
            engine=engine_future.result,
            remote=remote,
        )
        summary = result.summary
        assert summary is not None
        print_summary(console, summary, verbose=options(ctx).verbose)
        if summary.interrupted:
            return summary.exit_code
        if remote is not None:
            remote.check_required()  # a push refused, or the registry gone: ERROR, exit 1
        # the image tests run on the home engine (the first that answered; --load brought every image there)
        probe = docker_probe(engine_future.result().home.spec)
        run_options = RunOptions(jobs=at_once, no_cache=command.no_cache, timeout_s=command.timeout_s)
        try:
            outcomes = run_jobs(jobs, summary, store, probe, run_options, _print_outcome)
        except KeyboardInterrupt as stop:
            typer.echo("interrupted: the running checks finished, the others did not run", err=True)
            return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
        finally:
            probe.close()
    code = exit_code(outcomes)
    _print_summary(outcomes, code)
    if command.junit is not None:
        _write_junit(command.junit, outcomes, summary)
        typer.echo(f"JUnit XML written to {command.junit}")
    write_step_summary(
        lambda: image_tests_markdown(outcomes, code, summary),
        warn=lambda message: typer.echo(f"WARNING {message}", err=True),
    )
    return code


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


def _write_junit(path: Path, outcomes: Sequence[JobOutcome], build: BuildSummary) -> None:
    """The build's suites (one per platform: ``build linux/amd64``), then one suite per test run."""
    from orchestrator.imagetest.junit import image_test_error_suite, image_test_suite, write_junit
    from orchestrator.report.junit_build import build_suites

    suites = build_suites(build)
    for o in outcomes:
        label, platform = o.job.test.label, o.job.platform
        if o.error is not None:
            suites.append(image_test_error_suite(label, platform, o.error_case, o.error, o.error_details))
        else:
            suites.append(image_test_suite(label, platform, o.results, cached=o.cached, ran_at=o.ran_at))
    write_junit(path, suites)
