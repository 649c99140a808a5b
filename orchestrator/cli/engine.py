"""The local Docker engine for commands that can do without one (lock, query outdated)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from orchestrator.engine.api import DaemonUnavailable, Executor

if TYPE_CHECKING:
    from orchestrator.registry.pins import Resolver


def local_engine() -> Executor | None:
    """The engine at DOCKER_HOST or the default socket, or None (with a note) when none answers."""
    import typer

    from orchestrator.engine.docker import DockerExecutor

    executor = DockerExecutor()
    try:
        executor.ping()
    except DaemonUnavailable as exc:
        executor.close()
        typer.echo(f"WARNING {exc}; bases are resolved from registries only", err=True)
        return None
    return executor


@contextmanager
def base_resolver() -> Iterator[Resolver]:
    """A Resolver of bases on the registries and the local engine; both closed when the command ends."""
    from orchestrator.registry.pins import Resolver

    executor = local_engine()
    resolver = Resolver(executor)
    try:
        yield resolver
    finally:
        resolver.close()
        if executor is not None:
            executor.close()
