"""Comparing images on a real engine: their file systems as ``docker export`` gives them.

Shared by the integration tests that build one family two ways and compare the results. Not a
test module: it needs the docker SDK's low-level client, which the integration fixtures give.
"""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
from collections.abc import Mapping
from typing import Any

# What creating a container adds to its file system, whatever the image holds.
ADDED_BY_CREATION = frozenset({"etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"})

Entry = tuple[str, int, int, int, str]  # type, mode, uid, gid, sha256 of the content or the link target


def filesystem(api: Any, image: str, label: tuple[str, str]) -> dict[str, Entry]:
    """``path -> (type, mode, uid, gid, sha256 or link target)`` of a container created from ``image``.

    ``api`` is a ``docker.APIClient``; ``label`` (name, value) goes on the container, which is removed
    again at once. Mtimes are not kept, nor the files container creation adds (``ADDED_BY_CREATION``).
    """
    container = api.create_container(image, command=["true"], labels={label[0]: label[1]})
    try:
        stream = io.BytesIO(b"".join(api.export(container["Id"])))
    finally:
        api.remove_container(container["Id"], force=True)
    entries: dict[str, Entry] = {}
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            path = info.name.removeprefix("./").strip("/")
            if not path or path in ADDED_BY_CREATION:
                continue
            if info.isfile():
                data = tar.extractfile(info)
                assert data is not None
                detail = hashlib.sha256(data.read()).hexdigest()
                kind = "file"
            elif info.issym() or info.islnk():
                detail, kind = info.linkname, "symlink" if info.issym() else "hardlink"
            else:
                detail, kind = "", "dir" if info.isdir() else f"type {info.type!r}"
            entries[path] = (kind, stat.S_IMODE(info.mode), info.uid, info.gid, detail)
    return entries


def diff(
    left: Mapping[str, Entry], right: Mapping[str, Entry], names: tuple[str, str] = ("left", "right")
) -> list[str]:
    """One line per path whose entry differs (or exists on one side only), in path order."""
    lines = []
    for path in sorted(set(left) | set(right)):
        if left.get(path) != right.get(path):
            lines.append(f"{path}: {names[0]} {left.get(path)} != {names[1]} {right.get(path)}")
    return lines
