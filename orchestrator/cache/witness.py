"""The paths a loading result was derived from, and their lstat signatures.

Loading reads BUILD, .star and Dockerfiles, lists directories (package discovery, glob) and checks
that paths exist. Recording each of those paths lets a later run reuse the result after checking
only their signatures: a file's content moves its size, mtime or ctime; a directory's listing
(a new BUILD file, a file a glob would match, a new symlink) moves the directory's mtime.

A directory whose signature moved is listed again and compared by what loading used of it: for
package discovery only its subdirectories and BUILD files, for a glob every entry. So a report
written into the workspace root (``build --report report.json``) does not make the next command
evaluate every BUILD file again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable

from orchestrator.cache.statcache import StatSignature, stat_signature

PACKAGES = "packages"  # a directory package discovery listed: subdirectories and BUILD files count
FILES = "files"  # a directory a glob listed: every entry counts
BUILD_NAMES = ("BUILD", "BUILD.bazel")

Signature = StatSignature | None  # None: missing


def signature(path: str) -> Signature:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return stat_signature(st)


class Witness:
    """Collects workspace-relative paths; ``signatures`` reads them all at the end."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.paths: set[str] = set()
        self.listings: dict[str, tuple[str, str]] = {}  # directory -> (kind, digest of what counted)
        self._lock = threading.Lock()

    def saw(self, path: str) -> None:
        """Record ``path`` (absolute, or relative to the root)."""
        rel = self._relative(path)
        if rel is not None:
            with self._lock:
                self.paths.add(rel)

    def listed(self, path: str, kind: str, entries: Iterable[os.DirEntry[str]]) -> None:
        """Record that loading listed the directory ``path`` and used its ``entries`` as ``kind``."""
        rel = self._relative(path)
        if rel is None:
            return
        digest = listing_digest(entries, kind)
        with self._lock:
            self.paths.add(rel)
            if self.listings.get(rel, (PACKAGES, ""))[0] == PACKAGES:  # a glob's listing is the stricter
                self.listings[rel] = (kind, digest)

    def signatures(self) -> dict[str, Signature]:
        return {rel: signature(os.path.join(self.root, rel)) for rel in sorted(self.paths)}

    def _relative(self, path: str) -> str | None:
        rel = os.path.relpath(path, self.root) if os.path.isabs(path) else path
        return None if rel.startswith("..") else rel


def listing_digest(entries: Iterable[os.DirEntry[str]], kind: str) -> str:
    """A digest of the entries of a directory that matter to ``kind``."""
    names = []
    for entry in entries:
        is_dir = entry.is_dir(follow_symlinks=False)
        if kind == FILES or (is_dir and not entry.name.startswith(".")) or entry.name in BUILD_NAMES:
            names.append(entry.name + ("/" if is_dir else ""))
    return hashlib.sha1("\0".join(sorted(names)).encode(), usedforsecurity=False).hexdigest()


def _listing_now(path: str, kind: str) -> str | None:
    try:
        with os.scandir(path) as entries:
            return listing_digest(entries, kind)
    except OSError:
        return None


def unchanged(
    root: str,
    recorded: dict[str, Signature],
    recorded_at: int,
    racy_window_ns: int,
    listings: dict[str, tuple[str, str]] | None = None,
) -> bool:
    """True when every recorded path has the same signature now and none was racy when recorded.

    A listed directory whose signature moved (or is racy) still counts as unchanged when what
    loading used of its listing is the same (``listings``: directory -> (kind, digest)).
    """
    trusted_before = recorded_at - racy_window_ns
    for rel, old in recorded.items():
        now = signature(os.path.join(root, rel))
        if now == old and (now is None or (now[1] < trusted_before and now[2] < trusted_before)):
            continue
        listing = (listings or {}).get(rel)
        if listing is not None and _listing_now(os.path.join(root, rel), listing[0]) == listing[1]:
            continue
        return False
    return True
