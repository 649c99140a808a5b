"""The registry as a cache shared between machines: look up, pull and push content tags.

Each node's image is ``repository:key-<key>`` locally and ``<registry>/<repository>:key-<key>`` in
the registry. Unless the registry is required, it is never a failure of the build: the first time
it fails, a notice is noted, the registry is left alone for the rest of the run, and the build goes
on locally. The notice is a WARNING when the registry is down (a laptop offline) and an ERROR when
it refuses our credentials (401/403: in CI, a cache silently lost). A refused push is a WARNING
(an ERROR when it was refused for want of rights), and no more pushes are tried after one is
refused for want of rights.

``required=True`` (``--require-registry``, WORKSPACE's ``require_registry``) turns an unusable
registry into a failure: a lookup that fails raises ``RegistryRequired`` (exit 1) before anything
is built, and ``check_required`` raises it after the run when a push failed or the registry went
down. A pulled image is used only if it carries the node's key label and platform.

Reading and writing are separate: ``write=False`` (``--no-remote-cache-write``, for pull requests)
looks up and pulls but never pushes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from orchestrator.core.content import content_tag, image_problem
from orchestrator.core.model import Node
from orchestrator.engine.api import Executor, ImageInfo, TransferFailed
from orchestrator.errors import EXIT_BUILD_FAILED, OrchestratorError
from orchestrator.registry.client import RegistryAuthError, RegistryError, RegistryUnavailable, RemoteImage

# How the engine words a push refused for want of rights (its stream errors carry no status code).
_PUSH_DENIED = re.compile(
    r"\b(?:unauthorized|denied|forbidden|authentication required|no basic auth credentials)\b", re.IGNORECASE
)


class Level(StrEnum):
    WARNING = "WARNING"
    ERROR = "ERROR"  # the build goes on, but something the user relies on is lost (the cache, in CI)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """Something the user should read, at a level: the CLI prints ``<LEVEL> <message>``."""

    message: str
    level: Level = Level.WARNING


class RegistryRequired(OrchestratorError):
    """The registry cache is required (``--require-registry``) and could not be used (exit 1)."""

    exit_code = EXIT_BUILD_FAILED


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

    def __init__(self, registry: RegistryClient, *, write: bool = True, required: bool = False) -> None:
        self.registry = registry
        self.write = write
        self.required = required
        self.down: str | None = None  # why the registry is left alone for the rest of the run
        self.push_refused: str | None = None  # why no more pushes are tried (refused for want of rights)
        self._push_failures: list[str] = []
        self._notices: list[Notice] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the registry's client (at the end of the command that made it)."""
        self.registry.close()

    @property
    def notices(self) -> list[Notice]:
        """Every notice so far, in order."""
        with self._lock:
            return list(self._notices)

    @property
    def warnings(self) -> list[str]:
        """The WARNING-level notices' messages (the ERROR ones are printed once, when they happen)."""
        return [n.message for n in self.notices if n.level is Level.WARNING]

    def warn(self, message: str) -> None:
        self._note(Notice(message=message))

    def check_required(self) -> None:
        """Raise RegistryRequired if the registry is required and could not be used during the run."""
        if not self.required:
            return
        with self._lock:
            problem = self.down or self.push_refused or (self._push_failures[0] if self._push_failures else None)
        if problem is not None:
            raise self._required_error(problem)

    def lookup(self, nodes: Iterable[Wanted], repositories: Mapping[Node, str]) -> dict[Node, RemoteImage | None]:
        """What the registry holds for each node's content tag ({} when it cannot be asked)."""
        wanted = {(repositories[p.node], content_tag(p.key)): p.node for p in nodes}
        if self.down is not None or not wanted:
            return {}
        try:
            found = self.registry.lookup_many(sorted(wanted))
        except (RegistryUnavailable, RegistryError) as exc:
            self._went_down(exc)
            if self.required:
                raise self._required_error(str(exc)) from exc
            return {}
        return {node: found.get(wanted_key) for wanted_key, node in wanted.items()}

    def pull(self, executor: Executor, planned: Wanted, repository: str, copy: RemoteImage | None = None) -> ImageInfo:
        """Pull the node's image, check it, and give it its local content tag; raise TransferFailed.

        ``copy``: the registry's image, pulled by its digest (what was pushed is what arrives, even if
        the content tag moved since); else the content tag is pulled.
        """
        tag = content_tag(planned.key)
        reference = self.registry.reference(repository, tag)
        if copy is not None:
            reference = f"{reference.rpartition(':')[0]}@{copy.digest}"
        info = executor.pull(reference, planned.node.platform)
        problem = image_problem(info.labels, info.platform, key=planned.key, expected_platform=planned.node.platform)
        if problem is not None:
            executor.remove_image(reference)
            raise PoisonedImage(f"{planned.node}: the registry's {reference} {problem}: not used")
        executor.tag(info.image_id, repository, tag)
        return info

    def push(self, executor: Executor, planned: Wanted, repository: str, image_id: str) -> RemoteImage | None:
        """Push the node's image under its content tag; None (and a warning) when that fails."""
        if self.down is not None or self.push_refused is not None:
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
            self._push_failed(reference, exc)
            return None
        if image is None:
            self.warn(f"pushed {reference}, but the registry does not show it")
        return image

    def _note(self, notice: Notice) -> None:
        with self._lock:
            self._notices.append(notice)

    def _went_down(self, exc: OrchestratorError) -> None:
        with self._lock:
            if self.down is not None:
                return
            self.down = str(exc)
            address = self.registry.address
            if isinstance(exc, RegistryAuthError):
                notice = Notice(
                    message=f"registry cache {address} refused access: it is not used, building locally: {exc}",
                    level=Level.ERROR,
                )
            else:
                notice = Notice(message=f"registry cache {address} unavailable, building locally: {exc}")
            self._notices.append(notice)

    def _push_failed(self, reference: str, exc: OrchestratorError) -> None:
        denied = isinstance(exc, RegistryAuthError) or _PUSH_DENIED.search(str(exc)) is not None
        with self._lock:
            self._push_failures.append(f"could not push {reference}: {exc}")
            if not denied:
                self._notices.append(Notice(message=f"could not push {reference}: {exc}"))
                return
            if self.push_refused is not None:
                return  # said once; no more pushes are tried
            self.push_refused = f"the registry cache {self.registry.address} refused the push of {reference}: {exc}"
            self._notices.append(
                Notice(message=f"{self.push_refused}; nothing more is pushed to it this run", level=Level.ERROR)
            )

    def _required_error(self, problem: str) -> RegistryRequired:
        return RegistryRequired(
            f"the registry cache {self.registry.address} is required (--require-registry or WORKSPACE's "
            f"require_registry) and cannot be used: {problem}"
        )
