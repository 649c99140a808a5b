"""Action records: what was built for a key, and which key each node had last.

A record is written only after a build succeeded and its inputs were confirmed unchanged; it is
trusted only after the image it names is found with the matching key label (the planner checks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.core.model import Node


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildRecord:
    key: str
    label: str
    platform: str
    image: str  # the content-tagged reference, repository:key-<key>
    image_id: str
    duration_s: float
    built_at: str  # ISO 8601, UTC
    log: str


class Records:
    """The records of one engine (``engine``: its namespace, None for the local socket's; see
    ``names.record``). Which key a node had last is one for all engines."""

    def __init__(self, store: Store, engine: str | None = None) -> None:
        self._store = store
        self.engine = engine

    def on(self, engine: str | None) -> Records:
        """The records of another engine, in the same store."""
        return Records(self._store, engine)

    def get(self, key: str) -> BuildRecord | None:
        """The record of ``key``; None when there is none, or when what is stored is not a record."""
        value = self._store.get(names.record(key, self.engine))
        try:
            return None if value is None else BuildRecord(**value)
        except TypeError:
            return None  # valid JSON of another shape (an older or foreign writer): not trusted, rebuilt

    def put(self, node: Node, record: BuildRecord) -> None:
        self._store.set(names.record(record.key, self.engine), asdict(record))
        self._store.set(names.last_key(node), record.key)

    def last_key(self, node: Node) -> str | None:
        value = self._store.get(names.last_key(node))
        return None if value is None else str(value)

    def note_current(self, node: Node, key: str) -> None:
        """Remember ``key`` as the node's latest (a cache hit counts as much as a build)."""
        if self.last_key(node) != key:
            self._store.set(names.last_key(node), key)
