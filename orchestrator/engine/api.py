"""The contract between the planner/scheduler and whatever runs builds.

A planner describes a build completely in a BuildRequest (what to send, which Dockerfile text,
which labels); an Executor runs it and reports a BuildResult, or raises BuildFailed. The executor
leaves the image it built untagged: the pipeline tags it with its content tag only once everything
about the build was checked, so a failed or interrupted build never leaves a content tag behind.
Nothing outside ``executor/docker.py`` talks to Docker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Protocol

from orchestrator.core.content import KEY_LABEL as KEY_LABEL  # re-exported: executors label with it
from orchestrator.core.model import Node, Pairs
from orchestrator.errors import EXIT_BUILD_FAILED, OrchestratorError
from orchestrator.keys.context import ContextEntry
from orchestrator.keys.inputs import ContextCheck, RootfsCheck


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtraFile:
    """A file added to the build context that is not in the workspace (e.g. a rootfs tarball)."""

    path: str  # inside the context
    source: str  # absolute path on disk
    hashed: bool = False  # hashed as it is written, for the request's context check (an input of the key)


BUILDER_CHOICES = ("auto", "buildkit", "classic")  # --executor and workspace(executor = ...)


@dataclass(frozen=True, slots=True, kw_only=True)
class Secret:
    """A build secret for ``RUN --mount=type=secret,id=...``: where its value is, never the value.

    Exactly one of ``env`` and ``file``. The value never enters a key, a log, a report, the cache,
    or the image (layers, history, config).
    """

    id: str
    env: str | None = None  # the environment variable that holds the value
    file: str | None = None  # the absolute path of the file that holds it


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildRequest:
    node: Node
    key: str
    image: str  # the content-tagged reference the pipeline gives the image once it is checked
    context: tuple[ContextEntry, ...]  # exactly the hashed entries, sent as they are
    context_check: ContextCheck | RootfsCheck | None = (
        None  # what the context written must hash to (checked before sending)
    )
    extra_files: tuple[ExtraFile, ...] = ()
    dockerfile_path: str  # where the Dockerfile goes inside the context tar
    dockerfile_text: str  # the rebound Dockerfile (internal references point at exact parents)
    build_args: Pairs = ()
    target: str | None = None
    platform: str
    labels: Pairs = ()  # OCI labels and the key label
    network_mode: str | None = None
    no_cache: bool = False  # build every step again (hermetic builds: no layer a networked RUN made)
    engine_timeout_s: float | None = None  # fail when the engine answers no ping for this long
    secrets: tuple[Secret, ...] = ()  # BuildKit only
    ssh: tuple[str, ...] = ()  # ssh agent ids to forward (``default``: $SSH_AUTH_SOCK); BuildKit only
    log_path: str = field(compare=False)


Progress = Callable[[str], None]
"""Told each Dockerfile step as a build starts it (``Step 3/7 : RUN apt-get ...``), on the build's thread."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildResult:
    image_id: str
    duration_s: float
    builder: str = "classic"  # which built it: "buildkit" or "classic"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuilderChoice:
    """The builder an executor uses from now on, and how it reaches it."""

    name: str  # "buildkit" or "classic"
    detail: str  # e.g. "/usr/bin/docker build with DOCKER_BUILDKIT=1", "docker buildx build --load"
    warning: str | None = None  # ``auto`` fell back to the classic builder: why (said once, as a WARNING)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageInfo:
    image_id: str
    labels: Mapping[str, str]
    os: str
    architecture: str
    variant: str | None
    repo_tags: tuple[str, ...]
    onbuild: bool = False  # its config has ONBUILD triggers (``Config.OnBuild``): they run in a child's build

    @property
    def platform(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageSummary:
    """What one listing of the engine's images says of a tagged image."""

    image_id: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredImage:
    """What one listing of the engine's images says of an image, for clean-up (``orchestrator gc``)."""

    image_id: str
    repo_tags: tuple[str, ...]  # every ``repository:tag`` naming it
    labels: Mapping[str, str]
    size: int  # bytes, as ``docker images`` shows it: layers shared with other images included
    created: int  # Unix time


class BuildFailed(OrchestratorError):
    """A build ran and failed; ``log_tail`` holds the last lines of its log."""

    exit_code = EXIT_BUILD_FAILED

    def __init__(self, message: str, *, log_path: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_path = log_path
        self.log_tail = log_tail


class TransferFailed(OrchestratorError):
    """A pull from or push to a registry did not finish (the registry is down, refused, or lacks it)."""

    exit_code = EXIT_BUILD_FAILED


class DaemonUnavailable(OrchestratorError):
    """The Docker daemon cannot be reached (exit 2)."""


class BuildKitUnavailable(OrchestratorError):
    """``--executor buildkit`` where no way to BuildKit works; the message names what is missing (exit 2)."""


class Executor(Protocol):
    def ping(self, timeout: float | None = None) -> None:
        """Raise DaemonUnavailable unless the engine answers (within ``timeout`` seconds when given)."""

    def build(self, request: BuildRequest, cancel: threading.Event, progress: Progress | None = None) -> BuildResult:
        """Build the image ``request`` describes and leave it untagged; raise BuildFailed (log at ``request.log_path``).

        The context sent must pass ``request.context_check`` (else InputChanged, nothing sent); the image
        must carry the key label and be of ``request.platform``. When ``cancel`` is set the build is
        stopped as soon as possible and BuildFailed raised. ``progress`` is told each step as it starts.
        """

    def select_builder(self, choice: str) -> BuilderChoice:
        """Build with BuildKit or the classic builder from now on (``choice``: one of BUILDER_CHOICES).

        ``auto``: BuildKit when a way to it works (probed, not guessed from versions), else classic
        with a warning. ``buildkit``: raise BuildKitUnavailable naming what is missing. Called once,
        before the first build, only when something is to be built; without a call, classic.
        """

    def inspect(self, reference: str) -> ImageInfo | None:
        """The image named ``reference`` (a tag or an ID), or None when the engine lacks it."""

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        """Point ``repository:tag`` at ``image_id``."""

    def references(self) -> Mapping[str, ImageSummary]:
        """Every ``repository:tag`` the engine has, from one listing (not one request per image)."""

    def remove_image(self, reference: str) -> bool:
        """Untag ``reference`` (an ID: delete the image); False when it did not exist."""

    def native_platform(self) -> str:
        """The engine's own platform (``linux/amd64``); other platforms build under emulation."""

    def is_local(self) -> bool:
        """Whether the engine runs on this machine (so this machine's emulators are the engine's)."""

    def pull(self, reference: str, platform: str) -> ImageInfo:
        """Pull ``reference`` (``registry/repository:tag``) for ``platform``; raise TransferFailed."""

    def push(self, reference: str) -> str:
        """Push ``reference`` (``registry/repository:tag``); its manifest digest; raise TransferFailed."""

    def close(self) -> None:
        """Close the connection to the engine, if one is open (the next call opens a new one)."""

    def stored_images(self) -> tuple[StoredImage, ...]:
        """Every tagged image the engine has, with its tags, size and age, from one listing."""

    def layers_size(self) -> int:
        """The bytes the engine's image layers take on its disk (``docker system df``)."""

    def save(self, reference: str) -> IO[bytes]:
        """``docker save reference``: the image's tar (config, manifest.json, layers) in a temporary file.

        The file is seekable, at its start, and deleted when closed (the caller closes it). An image the
        engine lacks is an EngineError; nothing is run.
        """
