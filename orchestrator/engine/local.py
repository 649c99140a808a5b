"""The engine one invocation builds on: the Docker Engine at ``DOCKER_HOST`` (or the local socket).

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

from orchestrator.engine.api import Executor, ImageSummary


@dataclass(frozen=True, slots=True)
class Engine:
    executor: Executor
    images: Mapping[str, ImageSummary]  # one listing of the engine's images

    def journal_builds(self, cache_dir: Path) -> None:
        """Builds journal their step containers in the cache; the first removes those a killed engine
        left (``engine/leftovers.py``). Set once the cache directory is known, before any build."""
        from orchestrator.engine.docker import DockerExecutor

        if isinstance(self.executor, DockerExecutor):
            self.executor.journal_builds_in(cache_dir / "build-containers")


def connect() -> Engine:
    """The engine and one listing of its images (importing the docker SDK on the way)."""
    from orchestrator.engine.docker import DockerExecutor

    executor = DockerExecutor()
    try:
        executor.ping()
        return Engine(executor=executor, images=executor.references())
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
