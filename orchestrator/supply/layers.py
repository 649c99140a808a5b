"""An image's final file system, as far as some paths go, from its layers: no container is run.

A layer is a tar applied over the ones below it, with the OCI whiteouts (``docker save`` writes
them as Docker keeps them):

    dir/.wh.<name>      <name> (and all under it) is deleted from the layers below
    dir/.wh..wh..opq    dir is opaque: whatever the layers below had in it is gone

A whiteout hides only what lower layers hold: what its own layer adds stays. An entry that is not a
directory replaces what lower layers had at its path, a directory under it included. Only the paths
``wanted`` accepts are kept (their bytes, or a symbolic link's target); links are resolved at the
end, so ``/etc/os-release -> ../usr/lib/os-release`` gives the file it points at.

``saved_image_layers`` reads the layers of a ``docker save`` tar in order (``manifest.json`` lists
them, in Docker's own layout and in the OCI layout alike).
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from orchestrator.errors import OrchestratorError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_LINK_HOPS = 8


class ImageArchiveError(OrchestratorError):
    """A ``docker save`` tar this reader cannot make sense of (no manifest.json, a layer missing)."""


@dataclass(frozen=True, slots=True)
class Link:
    """A symbolic link kept in place of a wanted file: resolved once every layer is applied."""

    target: str


Entry = bytes | Link


def clean(name: str) -> str:
    """A tar member's name as a path from the root, without ``./`` or ``/`` in front."""
    while name.startswith("./"):
        name = name[2:]
    return posixpath.normpath("/" + name).lstrip("/")


def _ancestors(paths: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent and parent not in found:
            found.add(parent)
            parent = posixpath.dirname(parent)
    return found


def _drop(state: dict[str, Entry], path: str) -> None:
    """Delete ``path`` and everything under it."""
    state.pop(path, None)
    prefix = path + "/" if path else ""
    for name in [n for n in state if n.startswith(prefix)]:
        del state[name]


def apply_layer(state: dict[str, Entry], layer: IO[bytes], wanted: Callable[[str], bool]) -> None:
    """Apply one layer tar (compressed or not) over ``state``, the wanted files of the layers below."""
    deleted: list[str] = []  # hidden from the layers below (whiteouts, replaced directories)
    added: dict[str, Entry] = {}
    with tarfile.open(fileobj=layer, mode="r|*") as tar:
        below = _ancestors(state)
        for member in tar:
            path = clean(member.name)
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                deleted.append(parent + "/" if parent else "")
                continue
            if base.startswith(WHITEOUT):
                deleted.append(posixpath.join(parent, base[len(WHITEOUT) :]))
                continue
            if not member.isdir() and path in below:
                deleted.append(path)  # a file (or link) where a directory was
            if member.isdir():
                if path in state:
                    deleted.append(path)  # a directory where a file was
                continue
            if not wanted(path):
                added.pop(path, None)
                continue
            if member.issym():
                added[path] = Link(member.linkname)
            elif member.islnk():
                target = clean(member.linkname)
                found = added.get(target, state.get(target))
                if found is not None:
                    added[path] = found
            elif member.isfile():
                content = tar.extractfile(member)
                if content is not None:
                    added[path] = content.read()
    for path in deleted:
        if path.endswith("/") or path == "":
            prefix = path
            for name in [n for n in state if n.startswith(prefix)]:
                del state[name]
        else:
            _drop(state, path)
    state.update(added)


def final_files(layers: Iterable[IO[bytes]], wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The wanted files of the file system the layers make, in order (lowest first), links resolved."""
    state: dict[str, Entry] = {}
    for layer in layers:
        apply_layer(state, layer, wanted)
    files: dict[str, bytes] = {}
    for path in state:
        content = resolve(state, path)
        if content is not None:
            files[path] = content
    return files


def resolve(state: dict[str, Entry], path: str) -> bytes | None:
    """The bytes at ``path``, following symbolic links among the kept entries; None when they lead nowhere."""
    for _ in range(MAX_LINK_HOPS):
        entry = state.get(path)
        if not isinstance(entry, Link):
            return entry
        target = entry.target
        path = clean(target if target.startswith("/") else posixpath.join(posixpath.dirname(path), target))
    return None


def saved_image_layers(archive: IO[bytes]) -> Iterator[IO[bytes]]:
    """Each layer of the one image in a ``docker save`` tar, lowest first (``archive`` must be seekable)."""
    with _opened(archive) as outer:
        manifest = _member(outer, "manifest.json")
        try:
            entries = json.loads(manifest.read())
            layers = [str(name) for name in entries[0]["Layers"]]
        except (ValueError, LookupError, TypeError) as exc:
            raise ImageArchiveError(f"the image archive's manifest.json is not Docker's: {exc}") from exc
        for name in layers:
            yield _member(outer, name)


def _opened(archive: IO[bytes]) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=archive, mode="r:")
    except tarfile.TarError as exc:
        raise ImageArchiveError(f"the image archive is not a tar: {exc}") from exc


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        found = tar.extractfile(name)
    except KeyError:
        found = None
    if found is None:
        raise ImageArchiveError(f"the image archive lacks {name}")
    return found
