"""Build contexts as deterministic tar streams: what was hashed is exactly what is sent.

``write_context_tar`` packs the hashed ``ContextEntry`` values as the key sees them: sorted, every
header with mtime 0, uid/gid 0 and no user or group names, modes reduced to 0o644/0o755 for files
(the exec bit), 0o755 for directories and 0o777 for symlinks, which are kept as links. The rebound
Dockerfile is added under its own name with a ``.dockerignore`` that hides it and itself from the
build (the user's Dockerfile, when it is an input, stays at its path unchanged; the user's ignore
file is never sent: it was applied when the inputs were chosen), and extra files (e.g. a generated
rootfs tarball) are added with any missing parent directories. The same inputs always give the same bytes.

The format is POSIX.1-2001 (PAX): long and non-ASCII names go into standard extended headers, which
Go's ``archive/tar`` in the Docker Engine reads, and Python writes no timestamps into them.

File contents are streamed from disk and hashed on the way. A file whose size differs from its
entry's, or that vanished or changed kind, raises ``InputChanged``; so does a context whose streamed
bytes no longer give the digest its key was computed from (a ``ContextCheck``). Contexts are written
to a temporary file first, so the engine never receives a context that fails the check.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from orchestrator.engine.api import ExtraFile
from orchestrator.errors import InputChanged
from orchestrator.keys.context import IGNORE_FILE, ContextEntry, EntryKind
from orchestrator.keys.digests import Hasher, new_hasher
from orchestrator.keys.inputs import ContextCheck, RootfsCheck

TAR_FORMAT = tarfile.PAX_FORMAT
FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755
LINK_MODE = 0o777


@dataclass(frozen=True, slots=True, kw_only=True)
class _Member:
    """One tar member to write; exactly one of ``source``, ``data`` or neither (dir, link) is set."""

    path: str
    type: bytes  # tarfile.REGTYPE, DIRTYPE or SYMTYPE
    mode: int
    source: str | None = None  # a file to stream
    expected_size: int | None = None  # the size its entry recorded; None: whatever it is now
    follow_links: bool = False  # extra files may be links; context entries never are
    hashed: bool = False  # an input of the key: hashed as it is written, for the context check
    data: bytes | None = None
    linkname: str = ""


def write_context_tar(
    fileobj: IO[bytes],
    entries: Sequence[ContextEntry],
    *,
    dockerfile_path: str,
    dockerfile_text: str,
    extra_files: Sequence[ExtraFile] = (),
    check: ContextCheck | RootfsCheck | None = None,
    with_dockerfile: bool = True,
) -> None:
    """Write the build context for ``entries`` to ``fileobj`` (uncompressed tar, left open).

    With ``check``, the context files are hashed as they are written and the check must pass.
    ``with_dockerfile=False`` leaves out the rebound Dockerfile and the ``.dockerignore`` (and any
    entry at ``dockerfile_path``, which the Dockerfile would have replaced): exactly what a build
    may read, for a builder that takes the Dockerfile from outside the context (BuildKit).
    """
    members = _members(entries, dockerfile_path, dockerfile_text, extra_files, with_dockerfile=with_dockerfile)
    streamed: dict[str, str] = {}
    with tarfile.open(fileobj=fileobj, mode="w", format=TAR_FORMAT, encoding="utf-8") as tar:
        for member in members:
            hasher = new_hasher(check.algorithm) if check is not None and member.hashed else None
            _write_member(tar, member, hasher)
            if hasher is not None:
                streamed[member.path] = hasher.hexdigest()
    if check is not None:
        check.verify(entries, streamed)


def context_tar_stream(
    entries: Sequence[ContextEntry],
    *,
    dockerfile_path: str,
    dockerfile_text: str,
    extra_files: Sequence[ExtraFile] = (),
    check: ContextCheck | RootfsCheck | None = None,
) -> IO[bytes]:
    """The context tar in an anonymous temporary file, positioned at 0; the caller closes it.

    A real file, not memory: contexts can be large, and its size is known for Content-Length. It is
    complete (and ``check`` passed) before the caller can send a byte of it.
    """
    out = tempfile.TemporaryFile()  # noqa: SIM115 (returned open; the caller closes it)
    try:
        write_context_tar(
            out,
            entries,
            dockerfile_path=dockerfile_path,
            dockerfile_text=dockerfile_text,
            extra_files=extra_files,
            check=check,
        )
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


def _members(
    entries: Sequence[ContextEntry],
    dockerfile_path: str,
    dockerfile_text: str,
    extra_files: Sequence[ExtraFile],
    *,
    with_dockerfile: bool = True,
) -> list[_Member]:
    """Every member by path, sorted parents first; later sources replace earlier ones."""
    by_path = {entry.path: _entry_member(entry) for entry in entries}
    for extra in extra_files:
        path = _clean(extra.path)
        _add_parents(by_path, path)
        by_path[path] = _Member(
            path=path, type=tarfile.REGTYPE, mode=FILE_MODE, source=extra.source, follow_links=True, hashed=extra.hashed
        )
    path = _clean(dockerfile_path)
    if not with_dockerfile:
        by_path.pop(path, None)
        by_path.pop(IGNORE_FILE, None)
        return [by_path[p] for p in sorted(by_path, key=lambda p: p.split("/"))]
    _add_parents(by_path, path)
    by_path[path] = _Member(path=path, type=tarfile.REGTYPE, mode=FILE_MODE, data=dockerfile_text.encode("utf-8"))
    # The engine drops the Dockerfile and the ignore file from the context when the ignore file
    # names them (the docker CLI does the same for a Dockerfile from outside the context), so
    # COPY . never copies the rebound Dockerfile; the user's stays at its own path.
    ignore = f"{IGNORE_FILE}\n{path}\n".encode()
    by_path[IGNORE_FILE] = _Member(path=IGNORE_FILE, type=tarfile.REGTYPE, mode=FILE_MODE, data=ignore)
    # By path components, so a directory always precedes what it holds ("a" < "a/b" < "a-b").
    return [by_path[p] for p in sorted(by_path, key=lambda p: p.split("/"))]


def _entry_member(entry: ContextEntry) -> _Member:
    if entry.kind is EntryKind.DIR:
        return _Member(path=entry.path, type=tarfile.DIRTYPE, mode=DIR_MODE)
    if entry.kind is EntryKind.SYMLINK:
        return _Member(path=entry.path, type=tarfile.SYMTYPE, mode=LINK_MODE, linkname=entry.link_target or "")
    mode = EXEC_MODE if entry.executable else FILE_MODE
    return _Member(
        path=entry.path, type=tarfile.REGTYPE, mode=mode, source=entry.abs_path, expected_size=entry.size, hashed=True
    )


def _add_parents(by_path: dict[str, _Member], path: str) -> None:
    parent = posixpath.dirname(path)
    while parent and parent not in by_path:
        by_path[parent] = _Member(path=parent, type=tarfile.DIRTYPE, mode=DIR_MODE)
        parent = posixpath.dirname(parent)


def _clean(path: str) -> str:
    """A context-relative POSIX path without ``./``; ValueError if it leaves the context."""
    clean = posixpath.normpath(path).lstrip("/")
    if clean in ("", ".", "..") or clean.startswith("../"):
        raise ValueError(f"{path!r} is not a path inside the build context")
    return clean


def _header(member: _Member, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.path)
    info.type = member.type
    info.mode = member.mode
    info.size = size
    info.linkname = member.linkname
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_member(tar: tarfile.TarFile, member: _Member, hasher: Hasher | None) -> None:
    if member.data is not None:
        tar.addfile(_header(member, len(member.data)), io.BytesIO(member.data))
    elif member.source is not None:
        _write_file(tar, member, member.source, hasher)
    else:
        tar.addfile(_header(member))


def _write_file(tar: tarfile.TarFile, member: _Member, source: str, hasher: Hasher | None) -> None:
    """Stream ``source`` into the tar, checking it is still the file its entry described."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | (0 if member.follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(source, flags)
    except OSError as exc:
        raise _changed(member, f"cannot open it: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        size = _checked_size(member, os.fstat(fd))
        tar.addfile(_header(member, size), _CheckedReader(f, member, size, hasher))
        if os.fstat(fd).st_size != size:
            raise _changed(member, "it grew while being sent")


def _checked_size(member: _Member, st: os.stat_result) -> int:
    if not stat.S_ISREG(st.st_mode):
        raise _changed(member, "it is no longer a regular file")
    if member.expected_size is not None and st.st_size != member.expected_size:
        raise _changed(member, f"its size went from {member.expected_size} to {st.st_size} bytes")
    return st.st_size


class _CheckedReader:
    """A file reader for ``tarfile.addfile`` that reports a shrinking file as InputChanged.

    Errors writing the tar itself stay OSErrors: only reading the source means an input changed.
    """

    def __init__(self, f: IO[bytes], member: _Member, size: int, hasher: Hasher | None) -> None:
        self._f = f
        self._member = member
        self._remaining = size
        self._hasher = hasher

    def read(self, size: int = -1) -> bytes:
        want = self._remaining if size < 0 else min(size, self._remaining)
        try:
            data = self._f.read(want)
        except OSError as exc:
            raise _changed(self._member, f"reading it failed: {exc.strerror}") from exc
        if len(data) < want:
            raise _changed(self._member, "it shrank while being sent")
        self._remaining -= len(data)
        if self._hasher is not None:
            self._hasher.update(data)
        return data


def _changed(member: _Member, why: str) -> InputChanged:
    return InputChanged(f"input {member.path} changed during the build ({why}); run the build again")
