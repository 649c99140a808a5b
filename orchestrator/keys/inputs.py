"""The digest of an image target's inputs, and the check that a context about to be sent still has it.

A key hashes an *input manifest*: for an image, the Dockerfile's content hash and one entry per
context entry (path, kind, exec bit, link target or content hash); for a rootfs image, its tarball,
script and sources. ``inputs_manifest`` and ``rootfs_manifest`` are the one place each is made:
the key computer makes it from the hashes it read (or its stat cache knew), and ``ContextCheck`` /
``RootfsCheck`` make it again from the bytes actually written into the context tar, so a file
edited between hashing and sending is caught before the engine receives anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.errors import InputChanged
from orchestrator.keys.context import ContextEntry, EntryKind
from orchestrator.keys.digests import new_hasher

Manifest = tuple[tuple[str, str], ...]


def encode(manifest: Manifest) -> bytes:
    """Length-prefixed so no two manifests share an encoding."""
    parts: list[bytes] = []
    for entry in manifest:
        for text in entry:
            data = text.encode()
            parts.append(len(data).to_bytes(8, "big"))
            parts.append(data)
    return b"".join(parts)


def digest_manifest(manifest: Manifest, algorithm: str) -> str:
    hasher = new_hasher(algorithm)
    hasher.update(encode(manifest))
    return hasher.hexdigest()


def entry_value(entry: ContextEntry, hashes: Mapping[str, str]) -> str:
    if entry.kind is EntryKind.SYMLINK:
        return f"symlink {entry.link_target}"
    if entry.kind is EntryKind.DIR:
        return "dir"
    return f"file {'x' if entry.executable else '-'} {hashes[entry.path]}"


def inputs_manifest(dockerfile_hash: str, entries: Sequence[ContextEntry], hashes: Mapping[str, str]) -> Manifest:
    """What an image target's key says of its Dockerfile and context (``hashes``: file path -> content hash)."""
    return (("dockerfile", dockerfile_hash), *((f"ctx {e.path}", entry_value(e, hashes)) for e in entries))


def rootfs_manifest(
    *, tarball: str | None, script: tuple[str, bool] | None, srcs: Sequence[tuple[str, str]]
) -> Manifest:
    """What a rootfs image's key says of its inputs: the tarball's hash, or the script's (and its exec
    bit); then each source's, by path."""
    manifest: list[tuple[str, str]] = []
    if tarball is not None:
        manifest.append(("tarball", tarball))
    if script is not None:
        manifest.append(("script", script[0]))
        manifest.append(("script.exec", "x" if script[1] else "-"))
    manifest += [(f"src {rel}", digest) for rel, digest in srcs]
    return tuple(manifest)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextCheck:
    """What a context sent for a key must hash to; checked by whoever writes the context tar.

    ``dockerfile_hash`` is the hash of the bytes the request's Dockerfile was made from (read once,
    when the request was made). The Dockerfile the engine gets is the rebound text, sent under its
    own name; a context entry at the Dockerfile's path is the user's file, hashed as it is sent.
    """

    node: str  # for the message
    algorithm: str
    expected: str  # the inputs digest the key was computed from
    dockerfile_hash: str

    def verify(self, entries: Sequence[ContextEntry], streamed: Mapping[str, str]) -> None:
        """Raise InputChanged unless ``streamed`` (path -> hash of the bytes written) gives the expected digest."""
        hashes = dict(streamed)
        missing = [e.path for e in entries if e.kind is EntryKind.FILE and e.path not in hashes]
        if missing:
            raise InputChanged(f"{self.node}: input {missing[0]} was not sent; nothing was built or recorded")
        actual = digest_manifest(inputs_manifest(self.dockerfile_hash, entries, hashes), self.algorithm)
        if actual != self.expected:
            raise InputChanged(
                f"{self.node}: an input changed after it was hashed (the Dockerfile or a context file no longer "
                "has the content its key was computed from); nothing was built or recorded: run the build again"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class RootfsCheck:
    """What a ``rootfs_image(tarball = ...)``'s inputs must hash to, with the tarball hashed as it is sent.

    ``srcs``: each source's path and the hash of its bytes, read when the request was made (sources
    are inputs of the key but are not sent).
    """

    node: str
    algorithm: str
    expected: str
    member: str  # the tarball's path in the context tar
    srcs: tuple[tuple[str, str], ...] = ()

    def verify(self, entries: Sequence[ContextEntry], streamed: Mapping[str, str]) -> None:
        manifest = rootfs_manifest(tarball=streamed.get(self.member, ""), script=None, srcs=self.srcs)
        if digest_manifest(manifest, self.algorithm) != self.expected:
            raise InputChanged(
                f"{self.node}: an input changed after it was hashed (the tarball or a source no longer has the "
                "content its key was computed from); nothing was built or recorded: run the build again"
            )
