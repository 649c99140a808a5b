"""Content hashes of trees of files, reused while the files' stat says nothing changed.

One record per tree (a build context, a set of declared files): for every entry its stat
signature ``[size, mtime_ns, ctime_ns, inode]`` and content hash, the time the tree was stat'ed,
and a *summary* the caller derived from the hashes (the tree's digest). When every entry's
signature matches and none is *racy*, the summary is returned as it is and nothing is read or
encoded again. A racy entry is one whose mtime or ctime falls within the timestamp granularity of
the moment it was stat'ed: it may have changed again in the same tick without its stat moving,
so it is hashed again (git's racy-entry rule). Changing an exec bit or retargeting a symlink moves
ctime, so the signature covers them too.

A second, small record per tree holds one digest over all the entries' stats: when it matches and
nothing is racy, the tree's summary is returned without decoding the per-entry record at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import xxhash

from orchestrator.cache import names
from orchestrator.cache.store import Store

# Wider than any file system's mtime granularity we meet (ext4, xfs, overlayfs tick with the
# kernel's coarse clock; FAT needs 2 s).
RACY_WINDOW_NS = 2_000_000_000

StatSignature = tuple[int, int, int, int]  # (size, mtime_ns, ctime_ns, inode)


def stat_signature(st: os.stat_result) -> StatSignature:
    """What moves when a file changes: its size, mtime, ctime (an exec bit, a retargeted link) and inode."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


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

    @classmethod
    def of(cls, path: str, abs_path: str, st: os.stat_result) -> StatEntry:
        return cls(path, abs_path, *stat_signature(st))


E = TypeVar("E", bound=Stat)


def _signature(entries: Sequence[Stat]) -> tuple[str, int]:
    """A digest of every entry's path and stat, and the newest mtime or ctime among them."""
    text = "".join([f"{e.path}\0{e.size}\0{e.mtime_ns}\0{e.ctime_ns}\0{e.inode}\n" for e in entries])
    newest = max((max(e.mtime_ns, e.ctime_ns) for e in entries), default=0)
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8", "surrogateescape")), newest


def now_ns() -> int:
    return time.time_ns()


class StatCache:
    def __init__(self, store: Store | None) -> None:
        self._store = store
        self.files_hashed = 0
        self.bytes_hashed = 0

    def reopen(self) -> None:
        """A new connection to the same store (in a forked child: connections must not be shared)."""
        if self._store is not None:
            self._store = self._store.reopened()

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
        signature, newest = _signature(entries)
        quick = self._store.get(names.quick(tree_key)) if self._store is not None else None
        # Fast path: one digest over every entry's stat, compared with the last run's. Nothing is
        # decoded or compared per entry, and no entry may be racy.
        if quick is not None and quick["g"] == signature and newest < quick["t"] - RACY_WINDOW_NS:
            return str(quick["s"])
        record = self._store.get(tree_key) if self._store is not None else None
        known: dict[str, list[int | str]] = record["e"] if record else {}
        recorded_at: int = record["t"] if record else 0
        trusted_before = recorded_at - RACY_WINDOW_NS
        unchanged = record is not None and len(known) == len(entries)
        hashes: dict[str, str] = {}
        fresh: dict[str, list[int | str]] = {}
        for entry in entries:
            stat: list[int | str] = [entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode]
            old = known.get(entry.path)
            if (
                old is not None
                and old[:4] == stat
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
            stat.append(digest)
            fresh[entry.path] = stat
        summary = str(record["s"]) if unchanged and record is not None and "s" in record else summarize(hashes)
        if self._store is not None:
            if not unchanged:
                self._store.set(tree_key, {"t": stat_time_ns, "e": fresh, "s": summary})
            self._store.set(names.quick(tree_key), {"t": stat_time_ns, "g": signature, "s": summary})
        return summary
