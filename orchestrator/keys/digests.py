"""Content digests: xxh3-128 (fast, the default) or SHA-256 (for caches shared with untrusted writers)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Protocol

import xxhash

_CHUNK = 4 * 1024 * 1024


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    if algorithm == "xxh3":
        return xxhash.xxh3_128()  # type: ignore[no-any-return,unused-ignore]
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown digest {algorithm!r}")


def hash_bytes(data: bytes, algorithm: str) -> str:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return hasher.hexdigest()


def file_hasher(algorithm: str) -> Callable[[str], str]:
    """A function hashing a file's bytes, reusing one buffer per thread (no per-chunk allocation)."""
    local = threading.local()

    def hash_file(path: str) -> str:
        buffer: bytearray | None = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        hasher = new_hasher(algorithm)
        with open(path, "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                hasher.update(view[:count])
        return hasher.hexdigest()

    return hash_file
