"""The engines one invocation builds on: those ``--engine`` or ``workspace(engines = ...)`` name
(``core/engines.py: choose_engines``), else the Docker Engine at ``DOCKER_HOST`` (or the local socket).

``connect`` makes one engine's executor and takes one listing of its images (the planner checks
every record against it instead of asking once per node); ``connect_all`` connects several at once,
keeping those that do not answer aside (the run marks them down); ``closed_at_end`` closes them when
the command ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from orchestrator.core.engines import EngineSpec
from orchestrator.engine.api import Executor, ImageSummary
from orchestrator.errors import OrchestratorError

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


@dataclass(frozen=True, slots=True)
class Engines:
    """The engines a run builds on, the home engine first, and those that did not answer."""

    connected: tuple[Engine, ...]
    unreachable: tuple[tuple[EngineSpec, OrchestratorError], ...] = ()

    @property
    def home(self) -> Engine:
        return self.connected[0]

    @property
    def count(self) -> int:
        """How many engines were asked for."""
        return len(self.connected) + len(self.unreachable)

    @staticmethod
    def of(engine: Engine | Engines) -> Engines:
        return engine if isinstance(engine, Engines) else Engines(connected=(engine,))


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


def connect_all(specs: Sequence[EngineSpec], connect_one: Callable[[EngineSpec], Engine] = connect) -> Engines:
    """Every engine of ``specs`` at once (the first that answers is home); raises the first's error when none does."""
    with ThreadPoolExecutor(max_workers=len(specs), thread_name_prefix="connect") as pool:
        attempts = [(spec, pool.submit(connect_one, spec)) for spec in specs]
    connected, unreachable = [], []
    for spec, attempt in attempts:
        error = attempt.exception()
        if error is None:
            connected.append(attempt.result())
        elif isinstance(error, OrchestratorError):
            unreachable.append((spec, error))
        else:
            raise error
    if not connected:
        raise unreachable[0][1]
    return Engines(connected=tuple(connected), unreachable=tuple(unreachable))


Connected = TypeVar("Connected", Engine, Engines)


@contextmanager
def closed_at_end(connecting: Future[Connected]) -> Iterator[Future[Connected]]:
    """``connecting`` (``connect`` or ``connect_all`` running on a thread); what it made is closed on the way out."""
    try:
        yield connecting
    finally:
        if connecting.exception() is None:  # waits for connecting to end; nothing to close if it failed
            for engine in Engines.of(connecting.result()).connected:
                engine.executor.close()
