"""A small JSON key-value store over diskcache that survives its own damage.

Values are stored as JSON text (diskcache keeps ``str`` as plain TEXT, never pickled; values of
32 KiB and more go to files beside ``cache.db``), and nothing is ever evicted: a record disappears
only when the user deletes the cache directory or the store is quarantined.

Nothing is checked up front (no ``PRAGMA integrity_check``): opening costs what diskcache's own
open costs. Damage is noticed where it surfaces, and what sqlite3, the file system and json raise
is translated here, once:

    sqlite3 SQLITE_FULL, OSError ENOSPC/EDQUOT,        -> CacheFullError (exit 2)
      a locked database on a disk with no space left
    other sqlite3 errors about the environment:          -> CacheError (exit 2)
      BUSY, LOCKED, READONLY, CANTOPEN, PERM, IOERR...;
      any other OSError (EACCES, EROFS...)
    any other sqlite3 error (CORRUPT, NOTADB, a broken   -> quarantine
      schema, a short read of a truncated cache.db);
      a value that does not decode (JSON or UTF-8: a
      truncated value file, a torn row)

A quarantine renames ``<cache_dir>/store`` to ``<cache_dir>/store.damaged-<UTC time>``, opens a
fresh store in its place, reports the move through the warning handler (the CLI prints it as one
``WARNING`` line) and retries the operation once on the fresh store; a read then finds nothing.

Concurrency (threads of one Store, other Stores, other processes on the same cache):

- A quarantine holds an exclusive flock on ``<cache_dir>/store.lock``, and opening a store a shared
  one, so no store is opened half-way through a swap. The quarantine happens only while
  ``<cache_dir>/store`` is still the directory that failed (same inode): when another thread or
  process moved it first, this one just opens the fresh store. Two invocations never quarantine
  twice, and never move a fresh store.
- A process that keeps a moved store open reads on from it (a large value, read by path, is then
  a miss). Before every write a Store checks that its directory is still the live one and reopens
  it when not: one stat per write, none per read. An error on a store that was swapped meanwhile
  is not damage: the Store reopens the live one and retries.
- kill -9 in the middle of a write loses at most that write: diskcache writes a large value's file
  before the row that names it, in a transaction; SQLite's WAL rolls back an unfinished one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from orchestrator.errors import CacheError, CacheFullError

_DIR_NAME = "store"
_LOCK_NAME = "store.lock"
_DAMAGED_PREFIX = "store.damaged-"

T = TypeVar("T")
Warn = Callable[[str], None]

# sqlite primary result codes that say the environment, not the file, is at fault: moving the
# store aside would not help. Every other code of a DatabaseError means the file is damaged.
_ENVIRONMENT = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_AUTH,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_INTERRUPT,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_NOLFS,
}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}

_warn: Warn = logging.getLogger(__name__).warning


def set_warning_handler(handler: Warn) -> Warn:
    """Send the store's warnings (a quarantined store) to ``handler``; returns the previous one.

    A library never prints: the CLI installs a handler that prints ``WARNING <message>``. The
    handler is process-wide (worker threads and forked workers report through it too).
    """
    global _warn
    previous, _warn = _warn, handler
    return previous


class _Damage(Exception):
    """The store's files are damaged (internal: always handled by a quarantine)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Store:
    def __init__(self, cache_dir: Path) -> None:
        self._setup(cache_dir)
        self._connect()

    def _setup(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._dir = cache_dir / _DIR_NAME
        self._mutex = threading.Lock()  # one open or quarantine at a time among this Store's threads
        self._cache: diskcache.Cache | None = None
        self._inode: int | None = None  # of the directory self._cache was opened on

    def reopened(self) -> Store:
        """A Store on the same directory with connections of its own (the old one is left alone:
        in a forked child it belongs to the parent), opened at its first use: an error raised in a
        process pool's initializer would kill the worker, and the pool would start another forever."""
        store = Store.__new__(Store)
        store._setup(self.cache_dir)
        return store

    def get(self, key: str) -> Any:
        def get(cache: diskcache.Cache) -> Any:
            text = cache.get(key)
            return None if text is None else _decoded(key, text)

        return self._call(get)

    def set(self, key: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        self._call(lambda cache: cache.set(key, text), write=True)

    def add(self, key: str, value: Any) -> bool:
        """Store ``value`` unless ``key`` exists; True when it was written."""
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return bool(self._call(lambda cache: cache.add(key, text), write=True))

    def __contains__(self, key: str) -> bool:
        return bool(self._call(lambda cache: key in cache))

    def delete(self, key: str) -> None:
        self._call(lambda cache: cache.delete(key), write=True)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> diskcache.Cache:
        # A Cache whose __init__ fails (a damaged or full disk) would keep its connection, and the
        # file, open until the garbage collector breaks the traceback's cycle: close it at once.
        cache = diskcache.Cache.__new__(diskcache.Cache)
        try:
            cache.__init__(
                str(self._dir),
                eviction_policy="none",
                size_limit=2**62,
                cull_limit=0,
                statistics=False,
                sqlite_timeout=60,
            )
        except BaseException:
            with suppress(Exception):
                cache.close()
            raise
        return cache

    def _connect(self) -> None:
        cache_dir = self.cache_dir
        _translated(self._dir, lambda: cache_dir.mkdir(parents=True, exist_ok=True))
        with self._mutex:
            if self._cache is not None:
                return  # another thread connected first
            # shared: never open a store another process is swapping for a fresh one
            with _flock(self._dir, self.cache_dir / _LOCK_NAME, shared=True):
                before = _inode(self._dir)
                try:
                    self._cache = _translated(self._dir, self._open)
                    self._inode = _inode(self._dir)
                    return
                except _Damage as damage:
                    reason = damage.reason
        self._replace(None, before if before is not None else _inode(self._dir), reason)

    def _call(self, operation: Callable[[diskcache.Cache], T], *, write: bool = False) -> T:
        if self._cache is None:
            self._connect()
        elif write and _inode(self._dir) != self._inode:
            self._reopen_live()  # another process quarantined the store: write to the fresh one
        cache, inode = self._cache, self._inode
        assert cache is not None
        try:
            return _translated(self._dir, lambda: operation(cache))
        except _Damage as damage:
            self._replace(cache, inode, damage.reason)
        except CacheError as error:
            if isinstance(error, CacheFullError) or _inode(self._dir) == inode:
                raise
            # the store was swapped under this connection by another process's quarantine
            self._reopen_live()
        try:
            return _translated(self._dir, lambda: operation(self._cache))
        except _Damage as damage:
            raise CacheError(
                f"the local cache {self._dir} fails even after it was replaced by a fresh one: {damage.reason}",
                str(self._dir),
            ) from damage

    def _reopen_live(self) -> None:
        with self._mutex, _flock(self._dir, self.cache_dir / _LOCK_NAME, shared=True):
            old = self._cache
            self._cache = _translated(self._dir, self._open)
            self._inode = _inode(self._dir)
        if old is not None:
            with suppress(sqlite3.Error):
                old.close()

    def _replace(self, failed: diskcache.Cache | None, failed_inode: int | None, reason: str) -> None:
        """Quarantine the damaged store (unless someone already did) and open a fresh one."""
        with self._mutex:
            if failed is not None and self._cache is not failed:
                return  # another thread of this Store replaced it already
            with _flock(self._dir, self.cache_dir / _LOCK_NAME):
                if failed_inode is not None and _inode(self._dir) == failed_inode:
                    moved = _translated(self._dir, self._quarantine)
                    _warn(
                        f"the local cache {self._dir} was damaged ({reason}); it was moved to {moved} "
                        "and a fresh one started (delete the old one when you no longer need it)"
                    )
                # else another process moved it first: open whatever is live now
                try:
                    self._cache = _translated(self._dir, self._open)
                except _Damage as damage:
                    raise CacheError(
                        f"a fresh local cache at {self._dir} cannot be opened: {damage.reason}", str(self._dir)
                    ) from damage
                self._inode = _inode(self._dir)
        if failed is not None:
            with suppress(sqlite3.Error):
                failed.close()

    def _quarantine(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.cache_dir / f"{_DAMAGED_PREFIX}{stamp}"
        suffix = 1
        while target.exists():
            suffix += 1
            target = self.cache_dir / f"{_DAMAGED_PREFIX}{stamp}-{suffix}"
        self._dir.rename(target)
        return target


def _decoded(key: str, text: Any) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError; TypeError: not text
        raise _Damage(f"the value of {key!r} does not decode: {exc}") from exc


def _translated(path: Path, action: Callable[[], T]) -> T:
    """``action()``, with what sqlite3, the file system and diskcache raise translated:
    ``_Damage`` for a damaged store, CacheFullError / CacheError for what the user must fix."""
    try:
        return action()
    except diskcache.Timeout as exc:
        # diskcache turns any failure of BEGIN IMMEDIATE into a Timeout (the sqlite error is lost)
        if _disk_full(path):
            raise _full(path) from exc
        raise CacheError(
            f"the local cache {path} stayed locked for 60 s (another orchestrator writing to it?)", str(path)
        ) from exc
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:
            raise  # not from the database file: a programming error
        primary = code & 0xFF
        if primary == sqlite3.SQLITE_FULL or (primary == sqlite3.SQLITE_IOERR and _disk_full(path)):
            raise _full(path) from exc
        if primary in _ENVIRONMENT and code != sqlite3.SQLITE_IOERR_SHORT_READ:
            raise CacheError(
                f"cannot use the local cache {path}: {exc} (fix that, or use --cache-dir)", str(path)
            ) from exc
        raise _Damage(str(exc)) from exc
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise _full(path) from exc
        where = exc.filename or path
        raise CacheError(
            f"cannot use the local cache {path}: {where}: {exc.strerror or exc} (fix that, or use --cache-dir)",
            str(path),
        ) from exc


def _full(path: Path) -> CacheFullError:
    return CacheFullError(
        f"no space left on the device of the local cache {path}: free space there, "
        "or use --cache-dir to put the cache on another disk",
        str(path),
    )


def _disk_full(path: Path) -> bool:
    for candidate in (path, *path.parents):
        with suppress(OSError):
            stats = os.statvfs(candidate)
            return stats.f_bavail * stats.f_frsize < 64 * 1024
    return False


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


@contextmanager
def _flock(path: Path, lock_file: Path, *, shared: bool = False) -> Iterator[None]:
    """Shared while a store is opened, exclusive while one is quarantined and replaced."""
    fd = _translated(path, lambda: os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
