"""What ``build`` and ``test`` share around a Build: the engine, the registry cache, warnings, signals.

Imported only when one of those commands runs (it pulls in the build machinery).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from orchestrator.engine.api import Executor, ImageSummary
from orchestrator.engine.emulation import check_emulation
from orchestrator.errors import UsageError
from orchestrator.pipeline.build import Terminated
from orchestrator.pipeline.plan import Plan
from orchestrator.registry.cache import RemoteCache
from orchestrator.workspace.loading import LoadedWorkspace


@dataclass(frozen=True, slots=True)
class Engine:
    executor: Executor
    images: Mapping[str, ImageSummary]  # one listing of the engine's images

    def journal_builds(self, cache_dir: Path) -> None:
        """Builds journal their step containers in the cache; the first removes those a killed engine
        left (``executor/leftovers.py``). Set once the cache directory is known, before any build."""
        from orchestrator.engine.docker import DockerExecutor

        if isinstance(self.executor, DockerExecutor):
            self.executor.journal_builds_in(cache_dir / "build-containers")


def connect() -> Engine:
    """The engine and one listing of its images (importing the docker SDK on the way)."""
    from orchestrator.engine.docker import DockerExecutor

    executor = DockerExecutor()
    executor.ping()
    return Engine(executor=executor, images=executor.references())


def remote_cache(
    loaded: LoadedWorkspace, registry: str | None, *, write: bool = True, push: bool = False
) -> RemoteCache | None:
    """The registry cache of ``--registry``, else WORKSPACE's ``registry=``; None without either."""
    address = registry or loaded.workspace.settings.registry
    if not address:
        if push:
            raise UsageError("--push needs a registry: set registry= in WORKSPACE or pass --registry")
        return None
    from orchestrator.registry.client import Registry

    return RemoteCache(Registry(address), write=write)


def print_plan_warnings(console: Console, remote: RemoteCache | None, plan: Plan) -> None:
    """The registry's warnings so far (it was unreachable) and every poisoned content tag."""
    if remote is not None:
        for warning in remote.warnings:
            console.print(f"[yellow]WARNING[/] {warning}", highlight=False)
    for planned in plan.nodes:
        if planned.poisoned:
            console.print(f"[yellow]WARNING[/] {planned.node}: {planned.reason}", highlight=False)


def check_runnable(engine: Engine, platforms: Iterable[str]) -> None:
    """Every platform that will run here has an emulator (checked only for an engine on this machine)."""
    wanted = set(platforms)
    if wanted and engine.executor.is_local():
        check_emulation(wanted, engine.executor.native_platform())


@contextmanager
def sigterm_stops_cleanly() -> Iterator[None]:
    """SIGTERM (a cancelled CI job) stops running builds like Ctrl-C does: no record, no tag."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
