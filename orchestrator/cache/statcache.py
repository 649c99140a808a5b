"""Content hashes of trees of files, reused while the files' stat says nothing changed.

One record per tree (a build context, a set of declared files): for every entry its stat
signature ``[size, mtime_ns, ctime_ns, inode]`` and content hash, the time the tree was stat'ed,
and a *summary* the caller derived from the hashes (the tree's digest). When every entry's
signature matches and none is *racy*, the summary is returned as it is and nothing is read or
encoded again. A racy entry is one whose mtime or ctime falls within the timestamp granularity of
the moment it was stat'ed: it may have changed again in the same tick without its stat moving,
so it is hashed again (git's racy-entry rule). Changing an exec bit or retargeting a symlink moves
ctime, so the signature covers them too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from orchestrator.cache.store import Store

# Wider than any file system's mtime granularity we meet (ext4, xfs, overlayfs tick with the
# kernel's coarse clock; FAT needs 2 s).
RACY_WINDOW_NS = 2_000_000_000


class Stat(Protocol):
    """What the cache needs of an entry (ContextEntry and StatEntry both have it)."""

    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def ctime_ns(self) -> int: ...
    @property
    def inode(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StatEntry:
    path: str  # relative to the tree
    abs_path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int


E = TypeVar("E", bound=Stat)


def now_ns() -> int:
    return time.time_ns()


class StatCache:
    def __init__(self, store: Store | None) -> None:
        self._store = store
        self.files_hashed = 0
        self.bytes_hashed = 0

    def tree(
        self,
        tree_key: str,
        entries: Sequence[E],
        stat_time_ns: int,
        hash_entry: Callable[[E], str],
        summarize: Callable[[Mapping[str, str]], str],
    ) -> str:
        """The summary of ``entries``: the cached one when nothing changed, else recomputed.

        ``hash_entry`` reads one entry's content (it may return '' for directories and links);
        ``summarize`` turns ``{path: hash}`` into the tree's digest.
        """
        record = self._store.get(tree_key) if self._store is not None else None
        known: dict[str, list[int | str]] = record["e"] if record else {}
        recorded_at: int = record["t"] if record else 0
        trusted_before = recorded_at - RACY_WINDOW_NS
        unchanged = record is not None and len(known) == len(entries)
        hashes: dict[str, str] = {}
        fresh: dict[str, list[int | str]] = {}
        for entry in entries:
            signature: list[int | str] = [entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode]
            old = known.get(entry.path)
            if (
                old is not None
                and old[:4] == signature
                and entry.mtime_ns < trusted_before
                and entry.ctime_ns < trusted_before
            ):
                digest = str(old[4])
            else:
                digest = hash_entry(entry)
                self.files_hashed += 1
                self.bytes_hashed += entry.size
                unchanged = False
            hashes[entry.path] = digest
            signature.append(digest)
            fresh[entry.path] = signature
        if unchanged and record is not None and "s" in record:
            return str(record["s"])
        summary = summarize(hashes)
        if self._store is not None:
            self._store.set(tree_key, {"t": stat_time_ns, "e": fresh, "s": summary})
        return summary
