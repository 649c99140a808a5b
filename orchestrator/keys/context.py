"""The exact set of files Docker would receive as a build context.

``context_entries`` walks a context directory the way the Docker CLI packs it: the ignore file
(``<Dockerfile>.dockerignore`` next to the Dockerfile, else ``<context>/.dockerignore``) filters
the walk, while the Dockerfile and the ignore file are always sent. ``declared_entries`` is the
hermetic alternative: exactly the sources a target declares. Both return sorted, comparable
``ContextEntry`` values whose stat fields feed a stat cache without affecting equality.

Symlinks are recorded as links and never followed, so a link pointing outside the workspace is
harmless; the context directory and the Dockerfile themselves must resolve inside it. Sockets,
FIFOs and device files are skipped (Docker cannot send them either).
"""

from __future__ import annotations

import enum
import gc
import os
import posixpath
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import cast

from orchestrator.core.paths import check_inside
from orchestrator.errors import WorkspaceError
from orchestrator.keys.dockerignore import NO_MATCH, IgnoreMatcher, parse_dockerignore

IGNORE_FILE = ".dockerignore"


class EntryKind(enum.Enum):
    """What a context entry is on disk (lstat: a symlink is never its target)."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextEntry:
    """One file, directory or symlink of a build context."""

    path: str  # posix path relative to the context root, e.g. "app/main.py"
    kind: EntryKind
    executable: bool  # user exec bit; files only
    link_target: str | None  # what a symlink points to (never followed)
    abs_path: str = field(compare=False)
    # From lstat, for a stat cache: not part of the entry's identity.
    size: int = field(compare=False)
    mtime_ns: int = field(compare=False)
    ctime_ns: int = field(compare=False)
    inode: int = field(compare=False)


def dockerignore_path(context_dir: Path, dockerfile: Path) -> Path | None:
    """The ignore file Docker applies: ``<dockerfile>.dockerignore`` wins over the context's.

    A relative ``dockerfile`` is taken relative to ``context_dir``.
    """
    specific = (context_dir / dockerfile).with_name(dockerfile.name + IGNORE_FILE)
    if specific.is_file():
        return specific
    generic = context_dir / IGNORE_FILE
    return generic if generic.is_file() else None


def context_entries(
    context_dir: Path, dockerfile: Path, *, workspace_root: Path, forced: bool = True
) -> tuple[ContextEntry, ...]:
    """Every entry Docker would send for ``context_dir``, filtered by its ignore file, sorted by path.

    ``forced=False``: without Docker's exception for the Dockerfile and the ignore file, so each is
    there only when the patterns keep it (as ``COPY . .`` would copy it).
    """
    root = _context_root(context_dir, workspace_root)
    dockerfile = context_dir / dockerfile
    check_inside(dockerfile, workspace_root, what="Dockerfile")
    ignore_file = dockerignore_path(context_dir, dockerfile)
    out: list[ContextEntry] = []
    with _gc_paused():
        if ignore_file is None:
            _scan_all(str(root), "", out)
        else:
            matcher = _load_matcher(ignore_file, workspace_root)
            # Docker's rule: the Dockerfile and the ignore file are sent whatever the patterns say.
            always = {p for p in (relative_to(dockerfile, root), relative_to(ignore_file, root)) if p and forced}
            _scan_filtered(str(root), matcher, frozenset(always), out)
    out.sort(key=attrgetter("path"))
    return tuple(out)


def declared_entries(
    context_dir: Path, srcs: Sequence[str], dockerfile: Path, *, workspace_root: Path
) -> tuple[ContextEntry, ...]:
    """Exactly ``srcs`` (paths relative to ``context_dir``; directories whole) plus the Dockerfile.

    A ``.dockerignore`` at the top is left out: the engine receives the orchestrator's own.
    """
    root = _context_root(context_dir, workspace_root)
    dockerfile = context_dir / dockerfile
    check_inside(dockerfile, workspace_root, what="Dockerfile")
    found: dict[str, ContextEntry] = {}  # by path: srcs may overlap
    with _gc_paused():
        dockerfile_rel = relative_to(dockerfile, root)
        if dockerfile_rel and os.path.lexists(dockerfile):
            _add(found, [_stat_entry(str(root), dockerfile_rel)])
        for src in srcs:
            _add(found, _declared_tree(root, src))
    found.pop(IGNORE_FILE, None)  # never sent: the engine gets the orchestrator's own (see engine/tarball.py)
    return tuple(sorted(found.values(), key=attrgetter("path")))


def _declared_tree(root: Path, src: str) -> list[ContextEntry]:
    """One src's entries: itself and, for a directory, everything below it."""
    rel = _declared_rel(root, src)
    if rel == ".":  # the whole context
        return _scan_all(str(root), "", [])
    if not os.path.lexists(f"{root}/{rel}"):
        raise WorkspaceError(f"src {src} does not exist in the context directory {root}")
    entry = _stat_entry(str(root), rel)
    if entry.kind is not _DIR:
        return [entry]
    return _scan_all(entry.abs_path, rel + "/", [entry])


def _load_matcher(ignore_file: Path, workspace_root: Path) -> IgnoreMatcher:
    resolved = check_inside(ignore_file, workspace_root, what="ignore file")
    text = resolved.read_text(encoding="utf-8", errors="surrogateescape")
    return IgnoreMatcher(parse_dockerignore(text, source=str(ignore_file)))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a walk.

    A walk allocates tens of thousands of long-lived, acyclic entries; each batch would trigger
    a collection, and together they cost ~10% of the walk.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _context_root(context_dir: Path, workspace_root: Path) -> Path:
    root = check_inside(context_dir, workspace_root, what="context directory")
    if not root.is_dir():
        raise WorkspaceError(f"context directory {context_dir} does not exist")
    return root


def relative_to(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` ("a/b"), or None when it is outside.

    Only the parent is resolved: a symlinked Dockerfile is the link, not its target.
    """
    unresolved = path.parent.resolve() / path.name
    if unresolved == root or not unresolved.is_relative_to(root):
        return None
    return unresolved.relative_to(root).as_posix()


def _declared_rel(root: Path, src: str) -> str:
    """A src as a clean relative path; WorkspaceError when it leaves the context."""
    rel = posixpath.normpath(src)
    escapes = rel == ".." or rel.startswith(("/", "../"))
    if not escapes and rel != ".":
        # Symlinked directories on the way must not lead out either (the src itself may be a link).
        parent = (root / rel).parent.resolve()
        escapes = not parent.is_relative_to(root)
    if escapes:
        raise WorkspaceError(f"src {src} resolves outside the context directory {root}")
    return rel


def _add(found: dict[str, ContextEntry], entries: Iterable[ContextEntry]) -> None:
    for entry in entries:
        found[entry.path] = entry


# Enum attribute access costs ~150ns on Python 3.11; these run per entry.
_FILE, _DIR, _SYMLINK = EntryKind.FILE, EntryKind.DIR, EntryKind.SYMLINK
_KINDS = {stat.S_IFREG: _FILE, stat.S_IFDIR: _DIR, stat.S_IFLNK: _SYMLINK}
_S_IFMT = 0o170000  # stat.S_IFMT(mode) without the call


class _EntryBuilder:
    """ContextEntry's mutable twin: the same slots, so a finished one can become a ContextEntry.

    A frozen dataclass's __init__ sets each field through object.__setattr__, the largest cost
    of a walk; plain slot stores and one __class__ switch take half the time.
    """

    __slots__ = ContextEntry.__slots__

    def __init__(self, rel: str, kind: EntryKind, mode: int, abs_path: str, st: os.stat_result) -> None:
        self.path = rel
        self.kind = kind
        self.executable = kind is _FILE and mode & stat.S_IXUSR != 0
        self.link_target = os.readlink(abs_path) if kind is _SYMLINK else None
        self.abs_path = abs_path
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.ctime_ns = st.st_ctime_ns
        self.inode = st.st_ino
        self.__class__ = ContextEntry  # type: ignore[assignment]


def _make_entry(rel: str, abs_path: str, st: os.stat_result) -> ContextEntry | None:
    """The entry for an lstat result; None for sockets, FIFOs and devices."""
    mode = st.st_mode
    kind = _KINDS.get(mode & _S_IFMT)
    if kind is None:
        return None
    return cast(ContextEntry, _EntryBuilder(rel, kind, mode, abs_path, st))


def _stat_entry(root: str, rel: str) -> ContextEntry:
    abs_path = f"{root}/{rel}"
    entry = _make_entry(rel, abs_path, os.lstat(abs_path))
    if entry is None:
        raise WorkspaceError(f"{abs_path} is not a file, directory or symlink")
    return entry


def _list_dir(abs_dir: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(abs_dir) as it:
            return list(it)
    except OSError as exc:
        raise WorkspaceError(f"cannot read directory {abs_dir}: {exc.strerror}") from exc


def _scan_all(abs_dir: str, rel_prefix: str, out: list[ContextEntry]) -> list[ContextEntry]:
    """Append every entry below ``abs_dir`` (paths prefixed with ``rel_prefix``) to ``out``."""
    stack = [(abs_dir, rel_prefix)]
    while stack:
        abs_dir, rel_prefix = stack.pop()
        for de in _list_dir(abs_dir):
            entry = _make_entry(rel_prefix + de.name, de.path, de.stat(follow_symlinks=False))
            if entry is None:
                continue
            out.append(entry)
            if entry.kind is _DIR:
                stack.append((de.path, entry.path + "/"))
    return out


def _scan_filtered(root: str, matcher: IgnoreMatcher, forced: frozenset[str], out: list[ContextEntry]) -> None:
    """Append the entries below ``root`` that ``matcher`` keeps, plus the ``forced`` paths.

    An excluded directory is still walked when something below it may be re-included (an
    exception, or a forced path); it is then sent only if something below it is.
    """
    forced_dirs = {d for p in forced for d in _with_ancestors(posixpath.dirname(p))}
    hidden: dict[str, ContextEntry] = {}  # walked but excluded directories

    def walk_anyway(rel_dir: str, match: int) -> bool:
        return rel_dir in forced_dirs or matcher.may_reinclude_under(rel_dir, match)

    stack = [(root, "", NO_MATCH)]
    while stack:
        abs_dir, rel_prefix, dir_match = stack.pop()
        for de in _list_dir(abs_dir):
            rel = rel_prefix + de.name
            match = matcher.last_match(rel, dir_match)
            excluded = matcher.excludes(match) and rel not in forced
            if excluded and not (de.is_dir(follow_symlinks=False) and walk_anyway(rel, match)):
                continue
            entry = _make_entry(rel, de.path, de.stat(follow_symlinks=False))
            if entry is None:
                continue
            if excluded:
                hidden[rel] = entry
            else:
                out.append(entry)
            if entry.kind is _DIR:
                stack.append((de.path, rel + "/", match))
    if hidden:
        out.extend(_hidden_parents(out, hidden))


def _hidden_parents(entries: Sequence[ContextEntry], hidden: dict[str, ContextEntry]) -> list[ContextEntry]:
    """The excluded directories that hold an included entry (Docker sends an entry's parents)."""
    needed: dict[str, ContextEntry] = {}
    for entry in entries:
        parent = posixpath.dirname(entry.path)
        while parent in hidden and parent not in needed:
            needed[parent] = hidden[parent]
            parent = posixpath.dirname(parent)
    return list(needed.values())


def _with_ancestors(rel_dir: str) -> list[str]:
    """``"a/b"`` -> ``["a", "a/b"]``; ``""`` -> ``[]``."""
    parts = rel_dir.split("/") if rel_dir else []
    return ["/".join(parts[: n + 1]) for n in range(len(parts))]
