"""The local Docker engine for commands that can do without one (lock, query outdated)."""

from __future__ import annotations

from orchestrator.engine.api import DaemonUnavailable, Executor


def local_engine() -> Executor | None:
    """The engine at DOCKER_HOST or the default socket, or None (with a note) when none answers."""
    import typer

    from orchestrator.engine.docker import DockerExecutor

    executor = DockerExecutor()
    try:
        executor.ping()
    except DaemonUnavailable as exc:
        typer.echo(f"WARNING {exc}; bases are resolved from registries only", err=True)
        return None
    return executor
