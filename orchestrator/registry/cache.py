"""The registry as a cache shared between machines: look up, pull and push content tags.

Each node's image is ``repository:key-<key>`` locally and ``<registry>/<repository>:key-<key>`` in
the registry. A registry that cannot be reached is never a failure of the build: the first time it
fails, a warning is noted, the registry is left alone for the rest of the run, and the build goes on
locally. A pulled image is used only if it carries the node's key label and platform.

Reading and writing are separate: ``write=False`` (``--no-remote-cache-write``, for pull requests)
looks up and pulls but never pushes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from orchestrator.core.content import content_tag, image_problem
from orchestrator.core.model import Node
from orchestrator.engine.api import Executor, ImageInfo, TransferFailed
from orchestrator.errors import OrchestratorError
from orchestrator.registry.client import RegistryError, RegistryUnavailable, RemoteImage


class Wanted(Protocol):
    """A node whose image is wanted under its content tag (the planner's PlannedNode is one)."""

    @property
    def node(self) -> Node: ...
    @property
    def key(self) -> str: ...


class RegistryClient(Protocol):
    """What the build needs of a registry (``orchestrator.registry.client.Registry``, or a fake in tests)."""

    @property
    def address(self) -> str: ...

    def reference(self, repository: str, tag: str) -> str: ...

    def lookup(self, repository: str, tag: str) -> RemoteImage | None: ...

    def lookup_many(
        self, wanted: Sequence[tuple[str, str]], *, workers: int = 8
    ) -> dict[tuple[str, str], RemoteImage | None]: ...

    def tag_manifest(self, repository: str, source: RemoteImage, tag: str) -> str: ...

    def put_index(self, repository: str, tag: str, images: Sequence[RemoteImage]) -> str: ...

    def close(self) -> None: ...


class PoisonedImage(TransferFailed):
    """The registry's image for a content tag is not the node's (another key or platform)."""


class RemoteCache:
    """One run's use of the registry cache; safe to share between the scheduler's threads."""

    def __init__(self, registry: RegistryClient, *, write: bool = True) -> None:
        self.registry = registry
        self.write = write
        self.down: str | None = None  # why the registry is left alone for the rest of the run
        self._warnings: list[str] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the registry's client (at the end of the command that made it)."""
        self.registry.close()

    @property
    def warnings(self) -> list[str]:
        with self._lock:
            return list(self._warnings)

    def warn(self, message: str) -> None:
        with self._lock:
            self._warnings.append(message)

    def lookup(self, nodes: Iterable[Wanted], repositories: Mapping[Node, str]) -> dict[Node, RemoteImage | None]:
        """What the registry holds for each node's content tag ({} when it cannot be asked)."""
        wanted = {(repositories[p.node], content_tag(p.key)): p.node for p in nodes}
        if self.down is not None or not wanted:
            return {}
        try:
            found = self.registry.lookup_many(sorted(wanted))
        except (RegistryUnavailable, RegistryError) as exc:
            self._went_down(exc)
            return {}
        return {node: found.get(wanted_key) for wanted_key, node in wanted.items()}

    def pull(self, executor: Executor, planned: Wanted, repository: str) -> ImageInfo:
        """Pull the node's image, check it, and give it its local content tag; raise TransferFailed."""
        tag = content_tag(planned.key)
        reference = self.registry.reference(repository, tag)
        info = executor.pull(reference, planned.node.platform)
        problem = image_problem(info.labels, info.platform, key=planned.key, expected_platform=planned.node.platform)
        if problem is not None:
            executor.remove_image(reference)
            raise PoisonedImage(f"{planned.node}: the registry's {reference} {problem}: not used")
        executor.tag(info.image_id, repository, tag)
        return info

    def push(self, executor: Executor, planned: Wanted, repository: str, image_id: str) -> RemoteImage | None:
        """Push the node's image under its content tag; None (and a warning) when that fails."""
        if self.down is not None:
            return None
        tag = content_tag(planned.key)
        reference = self.registry.reference(repository, tag)
        remote_repository, _, _ = reference.rpartition(":")
        try:
            executor.tag(image_id, remote_repository, tag)
            executor.push(reference)
            image = self.registry.lookup(repository, tag)
        except RegistryUnavailable as exc:
            self._went_down(exc)
            return None
        except OrchestratorError as exc:  # TransferFailed, RegistryError, the engine's errors
            self.warn(f"could not push {reference}: {exc}")
            return None
        if image is None:
            self.warn(f"pushed {reference}, but the registry does not show it")
        return image

    def _went_down(self, exc: OrchestratorError) -> None:
        with self._lock:
            if self.down is not None:
                return
            self.down = str(exc)
            self._warnings.append(
                f"registry cache {self.registry.address} unavailable, building locally: {exc}",
            )
