"""What every command shares: global options, loading the workspace, error handling, output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from orchestrator.core.engines import EngineSpec, choose_engines, home_engine
from orchestrator.core.label import Label
from orchestrator.errors import OrchestratorError
from orchestrator.workspace.loading import LoadedWorkspace, load

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from rich.console import Console

    from orchestrator.engine.local import Engine, Engines

P = ParamSpec("P")

# Options that ``build`` and ``test`` share.
RegistryOpt = Annotated[
    str | None,
    typer.Option("--registry", help="Registry cache, host[:port][/prefix] (default: WORKSPACE's registry=)"),
]
RequireRegistryOpt = Annotated[
    bool | None,
    typer.Option(
        "--require-registry/--no-require-registry",
        help="Fail (exit 1) when the registry cache is down, refuses the credentials or a push, instead of "
        "building locally (for CI; default: WORKSPACE's require_registry)",
        show_default=False,
    ),
]
RemoteCacheWriteOpt = Annotated[
    bool,
    typer.Option(
        "--remote-cache-write/--no-remote-cache-write",
        help="Push what is built to the registry cache (--no-remote-cache-write only reads, e.g. for PRs)",
    ),
]
EngineTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--engine-timeout",
        min=1,
        help="Seconds the engine may answer nothing during a build before the node fails "
        "(default: WORKSPACE's engine_timeout, else 120)",
    ),
]


class Builder(StrEnum):
    """``--executor``: engine/api.py's BUILDER_CHOICES (a test holds them equal)."""

    auto = "auto"
    buildkit = "buildkit"
    classic = "classic"


ExecutorOpt = Annotated[
    Builder | None,
    typer.Option(
        "--executor",
        help="Builder: auto (BuildKit when it works, else classic with a warning), buildkit (fail without it) "
        "or classic (default: WORKSPACE's executor, else auto)",
        show_default=False,
    ),
]
R = TypeVar("R")


class Output(StrEnum):
    label = "label"
    json = "json"


@dataclass(slots=True)
class GlobalOptions:
    workspace: Path | None = None
    cache_dir: str | None = None
    verbose: int = 0
    engines: tuple[str, ...] = ()  # --engine URL (repeatable; for now one)


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def load_workspace(ctx: typer.Context) -> LoadedWorkspace:
    opts = options(ctx)
    return load(Path.cwd(), explicit_root=opts.workspace, use_cache=True, cache_dir=opts.cache_dir)


def engine_spec(ctx: typer.Context, loaded: LoadedWorkspace) -> EngineSpec | None:
    """The home engine, for commands that use one (gc, lock, lint, the image tests' runs): the first of
    ``--engine``, else of WORKSPACE's ``engines``, else None (DOCKER_HOST's). UsageError (exit 2) for a
    URL not taken."""
    return home_engine(options(ctx).engines, loaded.workspace.settings.engines)


def engine_specs(ctx: typer.Context, loaded: LoadedWorkspace) -> tuple[EngineSpec, ...]:
    """The engines to build on: ``--engine`` (repeated), else WORKSPACE's ``engines``; () for DOCKER_HOST's."""
    return choose_engines(options(ctx).engines, loaded.workspace.settings.engines)


def connecting(
    pool: ThreadPoolExecutor, specs: tuple[EngineSpec, ...], connect: Callable[[EngineSpec | None], Engine]
) -> Future[Engines]:
    """Connect to the engines ``specs`` names on ``pool`` (beside the hashing): one, or several at once."""
    from orchestrator.engine.local import Engines, connect_all

    if len(specs) > 1:
        return pool.submit(connect_all, specs, connect)
    spec = specs[0] if specs else None
    return pool.submit(lambda: Engines.of(connect(spec)))


def print_error(error: OrchestratorError) -> None:
    typer.echo(f"ERROR {error}", err=True)


def print_warning(message: str) -> None:
    typer.echo(f"WARNING {message}", err=True)


def handle_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Expected errors become ``ERROR <message>`` and their exit code; no traceback."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except OrchestratorError as error:
            print_error(error)
            raise typer.Exit(error.exit_code) from None

    return wrapper


def emit_labels(labels: Iterable[Label], output: Output, *, ordered: bool = False) -> None:
    items = list(labels) if ordered else sorted(labels)
    if output is Output.json:
        emit_json([str(label) for label in items])
    else:
        sys.stdout.write("".join(f"{label}\n" for label in items))


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def stderr_console() -> Console:
    """A rich console on stderr; 120 columns when it is not a terminal (CI logs), not rich's 80."""
    import os

    from rich.console import Console

    wide = None if sys.stderr.isatty() else int(os.environ.get("COLUMNS", "120"))
    return Console(stderr=True, width=wide)
