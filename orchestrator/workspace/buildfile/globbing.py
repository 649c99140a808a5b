"""``glob(include, exclude)`` over a package directory, Bazel-style.

``*`` and ``?`` never cross ``/``; a ``**`` segment matches any number of directories. Only files
(and symlinks) are returned, sorted, relative to the package; subpackages (directories holding
their own BUILD file) are not entered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache

from orchestrator.cache.witness import FILES, Witness
from orchestrator.workspace.root import BUILD_FILES


@lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    segments = pattern.strip("/").split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
            continue
        regex = ""
        for char in segment:
            if char == "*":
                regex += "[^/]*"
            elif char == "?":
                regex += "[^/]"
            else:
                regex += re.escape(char)
        parts.append(regex if last else regex + "/")
    return re.compile("".join(parts) + r"\Z")


def package_files(package_dir: str, witness: Witness | None = None) -> list[str]:
    """Every file below ``package_dir`` that belongs to this package, relative, unsorted."""
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        directory = os.path.join(package_dir, rel) if rel else package_dir
        try:
            entries = list(os.scandir(directory))
        except OSError:
            if witness is not None:
                witness.saw(directory)
            continue
        if witness is not None:
            witness.listed(directory, FILES, entries)
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                if witness is not None:
                    witness.saw(entry.path)  # a BUILD file appearing in it makes it a subpackage
                if not any(os.path.isfile(os.path.join(entry.path, b)) for b in BUILD_FILES):
                    stack.append(path)
            else:
                found.append(path)
    return found


def glob(
    package_dir: str, include: Sequence[str], exclude: Sequence[str] = (), witness: Witness | None = None
) -> list[str]:
    files = package_files(package_dir, witness)
    wanted = [compile_glob(p) for p in include]
    unwanted = [compile_glob(p) for p in exclude]
    return sorted(f for f in files if any(r.match(f) for r in wanted) and not any(r.match(f) for r in unwanted))
