"""The engine one invocation builds on: the one ``--engine`` or ``workspace(engines = ...)`` names
(``core/engines.py: choose_engine``), else the Docker Engine at ``DOCKER_HOST`` (or the local socket).

``connect`` makes the executor and takes one listing of the engine's images (the planner checks
every record against it instead of asking once per node); ``closed_at_end`` closes it when the
command ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.core.engines import EngineSpec
from orchestrator.engine.api import Executor, ImageSummary

if TYPE_CHECKING:
    from orchestrator.engine.docker import DockerExecutor
    from orchestrator.engine.docker_probe import DockerProbe


@dataclass(frozen=True, slots=True)
class Engine:
    executor: Executor
    images: Mapping[str, ImageSummary]  # one listing of the engine's images
    spec: EngineSpec | None = None  # what --engine or WORKSPACE said of it; None: DOCKER_HOST's

    @property
    def native_platforms(self) -> tuple[str, ...]:
        """The platforms the engine was declared to run natively (``()``: only its own, as it says)."""
        return self.spec.platforms if self.spec is not None else ()

    def journal_builds(self, cache_dir: Path) -> None:
        """Builds journal their step containers in the cache; the first removes those a killed engine
        left (``engine/leftovers.py``); the BuildKit probe's answer is kept there too. Set once the
        cache directory is known, before any build."""
        from orchestrator.engine.docker import DockerExecutor

        if isinstance(self.executor, DockerExecutor):
            self.executor.journal_builds_in(cache_dir / "build-containers")
            self.executor.remember_probe_in(cache_dir / "buildkit-probe.json")


def docker_executor(spec: EngineSpec | None) -> DockerExecutor:
    """The executor on the engine ``spec`` describes (None: DOCKER_HOST's, else the local socket)."""
    from orchestrator.engine.docker import DockerExecutor

    if spec is None:
        return DockerExecutor()
    return DockerExecutor(spec.url, tls_dir=spec.tls, platforms=spec.platforms)


def docker_probe(spec: EngineSpec | None) -> DockerProbe:
    """The image tests' probe on the same engine as ``docker_executor(spec)``."""
    from orchestrator.engine.docker_probe import DockerProbe

    if spec is None:
        return DockerProbe()
    return DockerProbe(spec.url, tls_dir=spec.tls, platforms=spec.platforms)


def connect(spec: EngineSpec | None = None) -> Engine:
    """The engine and one listing of its images (importing the docker SDK on the way)."""
    executor = docker_executor(spec)
    try:
        executor.ping()
        return Engine(executor=executor, images=executor.references(), spec=spec)
    except BaseException:
        executor.close()
        raise


@contextmanager
def closed_at_end(connecting: Future[Engine]) -> Iterator[Future[Engine]]:
    """``connecting`` (``connect`` running on a thread); the engine it made is closed on the way out."""
    try:
        yield connecting
    finally:
        if connecting.exception() is None:  # waits for connecting to end; nothing to close if it failed
            connecting.result().executor.close()
