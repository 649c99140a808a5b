"""The paths a loading result was derived from, and their lstat signatures.

Loading reads BUILD, .star and Dockerfiles, lists directories (package discovery, glob) and checks
that paths exist. Recording each of those paths lets a later run reuse the result after checking
only their signatures: a file's content moves its size, mtime or ctime; a directory's listing
(a new BUILD file, a file a glob would match, a new symlink) moves the directory's mtime.
"""

from __future__ import annotations

import os
import threading

Signature = tuple[int, int, int, int] | None  # (size, mtime_ns, ctime_ns, inode); None: missing


def signature(path: str) -> Signature:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class Witness:
    """Collects workspace-relative paths; ``signatures`` reads them all at the end."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.paths: set[str] = set()
        self._lock = threading.Lock()

    def saw(self, path: str) -> None:
        """Record ``path`` (absolute, or relative to the root)."""
        rel = os.path.relpath(path, self.root) if os.path.isabs(path) else path
        if not rel.startswith(".."):
            with self._lock:
                self.paths.add(rel)

    def signatures(self) -> dict[str, Signature]:
        return {rel: signature(os.path.join(self.root, rel)) for rel in sorted(self.paths)}


def unchanged(root: str, recorded: dict[str, Signature], recorded_at: int, racy_window_ns: int) -> bool:
    """True when every recorded path has the same signature now and none was racy when recorded."""
    trusted_before = recorded_at - racy_window_ns
    for rel, old in recorded.items():
        now = signature(os.path.join(root, rel))
        if now != old:
            return False
        if now is not None and (now[1] >= trusted_before or now[2] >= trusted_before):
            return False
    return True
