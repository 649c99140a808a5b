"""Which engines of a run hold each node's image, and how one reaches another engine: the registry cache.

A node built (or held) on engine A whose child is placed on engine B reaches B by digest: the copy
pushed when it was built (waited for if that upload is still running), else pushed now from a live
engine holding it, then pulled on B and checked there (key label, platform) before B's content tag
and record are made. Each (engine, node) is fetched once, however many children want it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future

from orchestrator.core.model import Node
from orchestrator.engine.api import TransferFailed
from orchestrator.pipeline.plan import PlannedNode
from orchestrator.registry.cache import RemoteCache
from orchestrator.registry.client import RemoteImage


class Holdings:
    """What each engine holds (image IDs by engine URL) and each node's registry copy; thread-safe."""

    def __init__(self, *, remote: RemoteCache | None) -> None:
        self.remote = remote
        self.in_registry: dict[Node, RemoteImage] = {}  # each node's image in the registry cache, if known
        self._held: dict[Node, dict[str, str]] = {}
        self._uploads: dict[Node, Future[RemoteImage | None]] = {}
        self._lock = threading.Lock()
        self._fetching: dict[tuple[str, Node], threading.Lock] = {}

    def hold(self, node: Node, url: str, image_id: str) -> None:
        with self._lock:
            self._held.setdefault(node, {})[url] = image_id

    def image_on(self, node: Node, url: str) -> str | None:
        with self._lock:
            return self._held.get(node, {}).get(url)

    def holders(self, node: Node) -> dict[str, str]:
        """Engine URL -> image ID, for each engine holding ``node``."""
        with self._lock:
            return dict(self._held.get(node, {}))

    def holding(self, parents: Iterable[Node]) -> dict[str, int]:
        """How many of ``parents`` each engine holds (placement prefers the engine holding most)."""
        counts: dict[str, int] = {}
        with self._lock:
            for parent in parents:
                for url in self._held.get(parent, {}):
                    counts[url] = counts.get(url, 0) + 1
        return counts

    def note_copy(self, node: Node, image: RemoteImage) -> None:
        with self._lock:
            self.in_registry[node] = image

    def uploading(self, node: Node, upload: Future[RemoteImage | None]) -> None:
        """``node``'s push to the registry cache is running (children on other engines wait for it)."""
        with self._lock:
            self._uploads[node] = upload

    def onto(
        self,
        url: str,
        planned: PlannedNode,
        pull: Callable[[RemoteImage], str],
        *,
        push: Callable[[Node], RemoteImage | None],
    ) -> str:
        """The image ID of ``planned``'s node on the engine ``url``, fetched there first if it lacks it.

        ``pull(copy)`` pulls the registry's copy onto the engine, checks it and records it (its image
        ID); ``push(node)`` uploads the node from an engine holding it. Raises TransferFailed when no
        copy can be had.
        """
        node = planned.node
        found = self.image_on(node, url)
        if found is not None:
            return found
        with self._lock_for(url, node):
            found = self.image_on(node, url)
            if found is not None:
                return found
            return pull(self._copy(planned, url, push))

    def _copy(self, planned: PlannedNode, url: str, push: Callable[[Node], RemoteImage | None]) -> RemoteImage:
        node = planned.node
        with self._lock:
            copy = self.in_registry.get(node)
            upload = self._uploads.get(node)
        if copy is None and upload is not None:
            try:
                copy = upload.result()  # its own push, started when it was built
            except Exception:  # a failed upload was warned about; pushed again below
                copy = None
        if copy is None:
            with self._lock_for("", node):
                with self._lock:
                    copy = self.in_registry.get(node)
                copy = copy or push(node)
        if copy is None:
            raise TransferFailed(self._why_no_copy(node, url))
        return copy

    def _why_no_copy(self, node: Node, url: str) -> str:
        where = ", ".join(sorted(self.holders(node))) or "no engine"
        if self.remote is None:
            cause = "building on several engines needs a registry cache"
        elif self.remote.down is not None:
            cause = f"the registry cache is unavailable ({self.remote.down})"
        elif self.remote.push_refused is not None:
            cause = self.remote.push_refused
        else:
            cause = "its push to the registry cache failed (see the warnings)"
        return f"{node} is needed on {url} but held only on {where}, and no registry copy can be had: {cause}"

    def _lock_for(self, url: str, node: Node) -> threading.Lock:
        with self._lock:
            return self._fetching.setdefault((url, node), threading.Lock())
