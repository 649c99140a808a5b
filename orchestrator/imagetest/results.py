"""Cached check results: the same image and the same checks give the same results.

The key is ``test:`` + sha256 of (the image node's key, the platform, the test's canonical spec);
the image key already covers everything the image is built from, and the canonical spec makes two
spellings of one definition share results. Failures are cached as well as passes. A run in which a
command timed out is not cached: a timeout says more about the machine than about the image.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.imagetest.checks import CheckResult


def result_key(image_key: str, platform: str, spec: str) -> str:
    return names.test_result(image_key, platform, spec)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRun:
    """The results of one (test, platform), and when the checks ran (ISO 8601, UTC)."""

    results: tuple[CheckResult, ...]
    ran_at: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


class ResultCache:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key: str) -> RecordedRun | None:
        value = self._store.get(key)
        if not isinstance(value, dict):
            return None
        try:
            results = tuple(CheckResult.from_json(r) for r in value["results"])
            return RecordedRun(results=results, ran_at=str(value["ran_at"]))
        except (KeyError, TypeError, ValueError):
            return None  # written by another version: run again

    def put(self, key: str, results: Sequence[CheckResult], ran_at: str | None = None) -> RecordedRun | None:
        """Store the results unless a command timed out; the stored run, or None."""
        run = RecordedRun(results=tuple(results), ran_at=ran_at or now())
        if any(r.timed_out for r in results):
            return None
        self._store.set(key, {"results": [r.to_json() for r in run.results], "ran_at": run.ran_at})
        return run


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
