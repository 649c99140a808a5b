"""Per-key locks between processes sharing one cache (fcntl.flock).

The kernel releases a flock when its holder dies, even by ``kill -9``, so a crashed build never
leaves a lock behind (diskcache's Lock recipe would).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def key_lock(cache_dir: Path, key: str) -> Iterator[None]:
    """Hold the lock of ``key`` for the duration of the block (blocking until it is free)."""
    directory = cache_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
