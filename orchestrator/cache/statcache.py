"""Content hashes of files, reused while a file's stat says it is unchanged.

One record per tree (a build context, a set of declared files): ``{relative path: [size, mtime_ns,
ctime_ns, inode, hash]}`` plus the time the tree was stat'ed. A stored hash is reused only when all
four stat fields match and the entry is not *racy*: a file whose mtime falls within the timestamp
granularity of the moment it was stat'ed may have been changed again in the same tick without
its mtime moving, so it is hashed again (git's racy-entry rule).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.cache.store import Store

# Wider than any file system's mtime granularity we meet (ext4, xfs, overlayfs tick with the
# kernel's coarse clock; FAT needs 2 s).
RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class StatEntry:
    path: str  # relative to the tree
    abs_path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int


def now_ns() -> int:
    return time.time_ns()


class StatCache:
    def __init__(self, store: Store | None) -> None:
        self._store = store
        self.files_hashed = 0
        self.bytes_hashed = 0

    def hashes(
        self,
        tree_key: str,
        entries: Sequence[StatEntry],
        stat_time_ns: int,
        hash_file: Callable[[str], str],
    ) -> dict[str, str]:
        """The content hash of each entry, from the record when trustworthy, else by reading."""
        record = self._store.get(tree_key) if self._store is not None else None
        known: dict[str, list[int | str]] = record["e"] if record else {}
        recorded_at: int = record["t"] if record else 0
        fresh: dict[str, list[int | str]] = {}
        result: dict[str, str] = {}
        changed = record is None or len(known) != len(entries)
        for entry in entries:
            stat = [entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode]
            old = known.get(entry.path)
            if (
                old is not None
                and old[:4] == stat
                and entry.mtime_ns + RACY_WINDOW_NS < recorded_at
                and entry.ctime_ns + RACY_WINDOW_NS < recorded_at
            ):
                digest = str(old[4])
            else:
                digest = hash_file(entry.abs_path)
                self.files_hashed += 1
                self.bytes_hashed += entry.size
                changed = True
            result[entry.path] = digest
            fresh[entry.path] = [*stat, digest]
        if changed and self._store is not None:
            self._store.set(tree_key, {"t": stat_time_ns, "e": fresh})
        return result
