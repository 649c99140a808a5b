"""A small JSON key-value store over diskcache.

Values are stored as JSON text (diskcache keeps ``str`` as plain TEXT, never pickled), and nothing
is ever evicted: a record disappears only when the user deletes the cache directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import diskcache

_DIR_NAME = "store"


class Store:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(cache_dir / _DIR_NAME),
            eviction_policy="none",
            size_limit=2**62,
            cull_limit=0,
            statistics=False,
            sqlite_timeout=60,
        )

    def reopened(self) -> Store:
        """A Store on the same directory with connections of its own (the old one is left alone:
        in a forked child it belongs to the parent)."""
        return Store(self.cache_dir)

    def get(self, key: str) -> Any:
        text = self._cache.get(key)
        return None if text is None else json.loads(text)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        return {k: v for k in keys if (v := self.get(k)) is not None}

    def set(self, key: str, value: Any) -> None:
        self._cache.set(key, json.dumps(value, separators=(",", ":"), sort_keys=True))

    def add(self, key: str, value: Any) -> bool:
        """Store ``value`` unless ``key`` exists; True when it was written."""
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return bool(self._cache.add(key, text))

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def delete(self, key: str) -> None:
        self._cache.delete(key)

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
