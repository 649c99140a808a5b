"""The stat cache reuses hashes only for unchanged, non-racy entries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from orchestrator.cache.statcache import RACY_WINDOW_NS, StatCache, StatEntry
from orchestrator.cache.store import Store

T0 = 1_700_000_000_000_000_000


class CountingHasher:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.summaries = 0

    def __call__(self, entry: StatEntry) -> str:
        self.calls.append(entry.path)
        return f"h({entry.path})#{len(self.calls)}"

    def summarize(self, hashes: Mapping[str, str]) -> str:
        self.summaries += 1
        return json.dumps(hashes, sort_keys=True)


def hashes(cache: StatCache, tree: str, entries: list[StatEntry], at: int, hasher: CountingHasher) -> dict[str, str]:
    result: dict[str, str] = json.loads(cache.tree(tree, entries, at, hasher, hasher.summarize))
    return result


def entry(path: str, mtime: int, *, size: int = 10, ctime: int | None = None, inode: int = 1) -> StatEntry:
    return StatEntry(path, f"/abs/{path}", size, mtime, mtime if ctime is None else ctime, inode)


def test_unchanged_old_entries_are_not_reread(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        cache, hasher = StatCache(store), CountingHasher()
        entries = [entry("a", T0), entry("b", T0)]
        first = hashes(cache, "tree", entries, T0 + 10 * RACY_WINDOW_NS, hasher)
        second = hashes(cache, "tree", entries, T0 + 11 * RACY_WINDOW_NS, hasher)
    assert first == second
    assert len(hasher.calls) == 2


def test_racy_entry_is_rehashed_until_it_is_old_enough(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        cache, hasher = StatCache(store), CountingHasher()
        racy = [entry("a", T0)]
        hashes(cache, "tree", racy, T0 + 1000, hasher)  # stat'ed in the same tick as the write
        hashes(cache, "tree", racy, T0 + 5 * RACY_WINDOW_NS, hasher)  # racy then: read again
        hashes(cache, "tree", racy, T0 + 6 * RACY_WINDOW_NS, hasher)  # trusted now
    assert len(hasher.calls) == 2


def test_any_stat_field_change_forces_a_reread(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        cache, hasher = StatCache(store), CountingHasher()
        late = T0 + 10 * RACY_WINDOW_NS
        hashes(cache, "tree", [entry("a", T0)], late, hasher)
        for changed in (
            entry("a", T0, size=11),
            entry("a", T0 + 1),
            entry("a", T0, ctime=T0 + 5),
            entry("a", T0, inode=2),
        ):
            before = len(hasher.calls)
            hashes(cache, "tree", [changed], late, hasher)
            assert len(hasher.calls) == before + 1
            hashes(cache, "tree", [entry("a", T0)], late, hasher)


def test_trees_are_kept_apart(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        cache, hasher = StatCache(store), CountingHasher()
        late = T0 + 10 * RACY_WINDOW_NS
        hashes(cache, "one", [entry("a", T0)], late, hasher)
        hashes(cache, "two", [entry("a", T0)], late, hasher)
    assert len(hasher.calls) == 2


def test_records_are_json_not_pickle(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        hashes(StatCache(store), "tree", [entry("a", T0)], T0, CountingHasher())
        raw = store._cache.get("tree")
    assert isinstance(raw, str)
    assert raw.startswith("{")


def test_summary_is_reused_only_when_nothing_changed(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        cache, hasher = StatCache(store), CountingHasher()
        late = T0 + 10 * RACY_WINDOW_NS
        hashes(cache, "tree", [entry("a", T0)], late, hasher)
        hashes(cache, "tree", [entry("a", T0)], late, hasher)
        assert hasher.summaries == 1
        hashes(cache, "tree", [entry("a", T0), entry("b", T0)], late, hasher)  # a new file
        assert hasher.summaries == 2
        hashes(cache, "tree", [entry("b", T0)], late, hasher)  # a file removed
        assert hasher.summaries == 3


def test_quick_record_skips_the_per_entry_record_when_nothing_changed(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        cache, hasher = StatCache(store), CountingHasher()
        late = T0 + 10 * RACY_WINDOW_NS
        entries = [entry("a", T0), entry("b", T0)]
        hashes(cache, "tree", entries, late, hasher)
        store.delete("tree")  # only the quick record can answer now
        assert hashes(cache, "tree", entries, late + 1, hasher) == hashes(cache, "tree", entries, late + 2, hasher)
        assert len(hasher.calls) == 2
        hashes(cache, "tree", [entry("a", T0), entry("b", T0 + 1)], late, hasher)  # one stat moved
        assert len(hasher.calls) == 4  # the per-entry record is gone, so both are read again
