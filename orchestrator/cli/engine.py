"""The Docker engine for commands that can do without one (lock, lint, query outdated): the one
``--engine`` or ``workspace(engines = ...)`` names, else DOCKER_HOST's, else the local socket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from orchestrator.engine.api import DaemonUnavailable, Executor

if TYPE_CHECKING:
    from orchestrator.core.engines import EngineSpec
    from orchestrator.registry.pins import Resolver


def local_engine(spec: EngineSpec | None = None) -> Executor | None:
    """The engine ``spec`` names (None: DOCKER_HOST's, else the default socket), or None (with a note)
    when none answers."""
    import typer

    from orchestrator.engine.local import docker_executor

    executor = docker_executor(spec)
    try:
        executor.ping()
    except DaemonUnavailable as exc:
        executor.close()
        typer.echo(f"WARNING {exc}; bases are resolved from registries only", err=True)
        return None
    return executor


@contextmanager
def base_resolver(spec: EngineSpec | None = None) -> Iterator[Resolver]:
    """A Resolver of bases on the registries and the engine; both closed when the command ends."""
    from orchestrator.registry.pins import Resolver

    executor = local_engine(spec)
    resolver = Resolver(executor)
    try:
        yield resolver
    finally:
        resolver.close()
        if executor is not None:
            executor.close()
