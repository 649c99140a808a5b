"""What the checks of an ``image_test()`` need from a container engine, as a Protocol.

The checks (``imagetest/checks.py``) ask three questions of an image: what a command does when run
in it, what the file system holds at a path (without running anything, so images without a shell can
be checked), and what its configuration says. ``docker_probe.py`` answers them on a Docker Engine;
``tests/fakes/probe.py`` answers them from memory for unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

CONTENT_LIMIT = 1024 * 1024  # bytes of a file read for ``contains`` checks
DEFAULT_TIMEOUT_S = 60.0  # per command


class FileType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"  # device, fifo, socket


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRun:
    """How one command ended. ``timed_out``: killed after the timeout (``exit_code`` is then -1)."""

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFacts:
    """One file-system entry as the image holds it (a symlink itself, never its target)."""

    type: FileType
    mode: int  # permission bits with setuid, setgid and sticky (0o7777 at most)
    uid: int
    gid: int
    size: int = 0
    link_target: str | None = None  # symlinks only, as written in the link
    content: bytes | None = None  # regular files, when asked: the first CONTENT_LIMIT bytes
    truncated: bool = False  # content holds only the first CONTENT_LIMIT bytes


def _frozen(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """An image's configuration (``docker inspect``'s ``Config``); absent values are empty."""

    user: str = ""
    workdir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    exposed_ports: tuple[str, ...] = ()  # "8080/tcp", sorted
    labels: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()  # sorted

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", _frozen(self.env))
        object.__setattr__(self, "labels", _frozen(self.labels))


class ContainerProbe(Protocol):
    """Questions about an image; engine failures raise OrchestratorError (DaemonUnavailable: no engine)."""

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        user: str | None,
        platform: str,
        timeout_s: float,
    ) -> CommandRun:
        """Run ``command[0]`` as the entrypoint with ``command[1:]`` as its arguments; the container
        is removed afterwards, always. A command that cannot start (no such file) ends like ``docker
        run`` does: exit code 127 (126: not executable), the engine's message on stderr."""

    def file(self, image: str, path: str, *, read_content: bool) -> FileFacts | None:
        """The entry at absolute ``path`` without starting a container; None when it does not exist."""

    def config(self, image: str) -> ImageConfig:
        """The image's configuration."""
