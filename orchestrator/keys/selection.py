"""Precise inputs: the context entries an image's Dockerfile reads, and why each one is read.

The context Docker would receive (``context.context_entries``: the directory filtered by its
ignore file) is narrowed to what the needed stages read (``dockerfile.context_reads``): the
sources of COPY/ADD without ``--from``, ``RUN --mount=type=bind`` sources and the ONBUILD
triggers of the bases. Matching follows Docker's: a literal source is that path and, for a
directory, everything below it; a wildcard source matches path segment by segment (Go's
``filepath.Match``: ``*`` never crosses a ``/``), and a match that is a directory brings its
contents. ``**`` is not a Docker wildcard; a source holding it selects everything below its
literal prefix (more than needed, never less).

Never inputs unless a source names them by their exact path: the workspace's own files (BUILD,
WORKSPACE, ``.star``, images.toml, images.lock), so editing a BUILD file never rebuilds an image.
Never inputs at all: the ignore files (``never``); the engine receives the orchestrator's own
``.dockerignore``, which hides the Dockerfile it sends (see engine/tarball.py). The Dockerfile is an
input like any file when a source reads it (``COPY . .``); its bytes are in the key anyway. Every
selected entry's parent directories are sent with it, as Docker does.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from orchestrator.dockerfile.reads import ContextReads, Read
from orchestrator.keys.context import ContextEntry

WORKSPACE_FILE_NAMES = frozenset({"BUILD", "BUILD.bazel", "WORKSPACE", "WORKSPACE.bazel", "images.toml", "images.lock"})
WORKSPACE_FILE_SUFFIXES = (".star",)

PARENT = "a parent directory of an input (Docker sends it)"


def is_workspace_file(path: str) -> bool:
    """Whether ``path`` (in a context) is one of the workspace's own files."""
    name = posixpath.basename(path)
    return name in WORKSPACE_FILE_NAMES or name.endswith(WORKSPACE_FILE_SUFFIXES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The entries that are inputs, each with why, and whether the whole context had to be taken."""

    entries: tuple[ContextEntry, ...]  # sorted by path, as the context walk gives them
    why: dict[str, str]  # path -> the reason it is an input
    whole: str | None  # set when the whole context is an input: why


def select_inputs(entries: Sequence[ContextEntry], reads: ContextReads, *, never: frozenset[str]) -> Selection:
    """The inputs among ``entries`` (the context Docker would receive, sorted by path).

    ``never``: paths that are never inputs (the ignore files). Each read says where it comes from
    (``Read.explained``), which becomes the reason of what it selects.
    """
    by_path = {entry.path: entry for entry in entries if entry.path not in never}
    entries = list(by_path.values())
    why: dict[str, str] = {}
    if reads.whole is not None:
        for entry in entries:
            if entry.path not in why and not is_workspace_file(entry.path):
                why[entry.path] = f"the whole context: {reads.whole}"
        return _selection(by_path, why, whole=reads.whole)
    for read in reads.reads:
        for path in _matches(entries, read):
            why.setdefault(path, read.explained())
    for path in list(why):
        parent = posixpath.dirname(path)
        while parent and parent not in why and parent in by_path:
            why[parent] = PARENT
            parent = posixpath.dirname(parent)
    return _selection(by_path, why, whole=None)


def is_read(path: str, reads: ContextReads) -> bool:
    """Whether ``reads`` take ``path`` (a file's context-relative path, which may no longer exist).

    For ``--since``: a path that no entry stands for any more is matched by the same rules.
    """
    if reads.whole is not None:
        return not is_workspace_file(path)
    parts = path.split("/")
    probe = [_Probe("/".join(parts[: n + 1])) for n in range(len(parts))]  # the path and its parents
    return any(path in _matches(probe, read) for read in reads.reads)


@dataclass(frozen=True, slots=True)
class _Probe:
    """Stands for a context entry where only the path matters."""

    path: str


def _selection(by_path: dict[str, ContextEntry], why: dict[str, str], *, whole: str | None) -> Selection:
    paths = sorted(why)
    return Selection(entries=tuple(by_path[p] for p in paths), why={p: why[p] for p in paths}, whole=whole)


def _matches(entries: Sequence[ContextEntry | _Probe], read: Read) -> list[str]:
    """The paths ``read`` takes: what it names and, below a named directory, everything."""
    source = read.source
    if source == ".":
        return [e.path for e in entries if not is_workspace_file(e.path)]
    if not read.glob:
        below = source + "/"
        return [
            e.path for e in entries if e.path == source or (e.path.startswith(below) and not is_workspace_file(e.path))
        ]
    segments = source.split("/")
    if "**" in source:  # not Docker syntax: take everything below the literal prefix
        prefix = "/".join(segments[: next(i for i, s in enumerate(segments) if "**" in s)])
        return _matches(entries, replace(read, source=prefix or ".", glob=False))
    patterns = [re.compile(fnmatch.translate(_go_class(s))) for s in segments]
    found = []
    for entry in entries:
        parts = entry.path.split("/")
        if len(parts) < len(patterns) or not all(p.match(part) for p, part in zip(patterns, parts, strict=False)):
            continue
        named = len(parts) == len(patterns)  # the match itself, which a source may name exactly
        if not is_workspace_file(entry.path) or (named and not _has_wildcard(segments[-1])):
            found.append(entry.path)
    return found


def _go_class(segment: str) -> str:
    """Go's ``[^a]`` negation in fnmatch's spelling ``[!a]``."""
    return segment.replace("[^", "[!")


def _has_wildcard(segment: str) -> bool:
    return any(c in segment for c in "*?[")
