"""An in-memory Executor for tests of the planner and the scheduler: no daemon, no files.

``FakeExecutor`` records every BuildRequest in the order received, "builds" an untagged image per
request (its labels are the request's, so the key label is whatever the planner put there) after
writing its context tar to nowhere with the request's ContextCheck, as the real executor does, fails the nodes
it is told to, takes as long as it is told to (cancellably), tells ``progress`` of its one step
(``Step 1/1 : fake build``) before it waits, and notes the most builds it saw at once. It is safe
to call from the scheduler's worker threads.

    fake = FakeExecutor(fail={"//app:web"}, durations={"//base:os": 0.2})
    fake.add_image("debian:bookworm", labels={})  # an image the engine already has
    FakeExecutor(bases=FAMILY_BASES)  # holds the external bases of tests/workspaces.py's family

Builders: ``select_builder`` records each choice asked (``selections``); BuildKit is there unless
``buildkit=False`` (then ``auto`` falls back to classic with a warning and ``buildkit`` raises
BuildKitUnavailable). Each BuildResult names the builder chosen (classic when none was).

    FakeExecutor(buildkit=False)  # an engine whose BuildKit cannot be reached

``save`` (``docker save``) returns the tar prepared in ``archives`` for the image (by ID, by tag, or
``"*"`` for any image) and records each reference asked (``saves``); without one it raises.

A build fails before anything is built on an unpinned external base the engine lacks (and no
registry has): a test that builds on external bases gives them to the fake (``bases=``,
``add_image``), as a developer pulls them first.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from orchestrator.core.engines import LOCAL_SOCKET
from orchestrator.engine.api import (
    BUILDER_CHOICES,
    BuilderChoice,
    BuildFailed,
    BuildKitUnavailable,
    BuildRequest,
    BuildResult,
    DaemonUnavailable,
    Executor,
    ImageInfo,
    ImageSummary,
    Progress,
    StoredImage,
    TransferFailed,
)
from orchestrator.errors import OrchestratorError
from tests.fakes.registry import FakeRegistry

FailWhen = Collection[str] | Callable[[BuildRequest], bool]
STEP = "Step 1/1 : fake build"  # the one step of every fake build


@dataclass(slots=True)
class FakeImage:
    """An image held by the fake engine."""

    image_id: str
    labels: Mapping[str, str]
    platform: str
    tags: set[str] = field(default_factory=set)
    size: int = 0  # bytes, as docker images shows it
    created: int = 0  # Unix time
    onbuild: bool = False  # has ONBUILD triggers

    def info(self) -> ImageInfo:
        os_, arch, *variant = self.platform.split("/")
        return ImageInfo(
            image_id=self.image_id,
            labels=types.MappingProxyType(dict(self.labels)),
            os=os_,
            architecture=arch,
            variant=variant[0] if variant else None,
            repo_tags=tuple(sorted(self.tags)),
            onbuild=self.onbuild,
        )


class FakeExecutor:
    """Implements the Executor protocol in memory.

    ``fail``: labels (``"//pkg:name"``) whose builds fail, or a predicate on the request.
    ``durations``: seconds a build of a label takes (else ``default_duration``); the wait ends early,
    with BuildFailed, when the build is cancelled. ``daemon_up=False`` makes every call raise
    DaemonUnavailable. ``write_logs`` writes a small log at each request's ``log_path``.
    ``bases``: references of images the engine already holds (external bases, for ``native``).
    ``buildkit``: whether a way to BuildKit works; ``url``: the engine's address, as reports show it.
    """

    BUILDKIT_DETAIL = "the fake engine's BuildKit"
    CLASSIC_DETAIL = "the fake engine's classic builder"
    FALLBACK_WARNING = "BuildKit is not available on the fake engine: building with the classic builder"

    def __init__(
        self,
        *,
        fail: FailWhen = (),
        durations: Mapping[str, float] | None = None,
        default_duration: float = 0.0,
        daemon_up: bool = True,
        write_logs: bool = False,
        registry: FakeRegistry | None = None,
        native: str = "linux/amd64",
        bases: Collection[str] = (),
        buildkit: bool = True,
        url: str = LOCAL_SOCKET,
    ) -> None:
        self._fail = fail
        self._durations = dict(durations or {})
        self._default_duration = default_duration
        self.daemon_up = daemon_up
        self._write_logs = write_logs
        self.registry = registry
        self.native = native
        self.pulled: list[str] = []
        self.pushed: list[str] = []
        self._lock = threading.Lock()
        self.requests: list[BuildRequest] = []
        self.cancelled: list[BuildRequest] = []
        self.images: dict[str, FakeImage] = {}  # by image ID
        self._references: dict[str, str] = {}  # "repository:tag" -> image ID
        self._built: list[str] = []
        self.running = 0
        self.max_running = 0
        self.closed = False  # close() was called (the fake goes on answering)
        self.buildkit = buildkit
        self.url = url
        self.selections: list[str] = []  # every choice select_builder was asked, in order
        self.archives: dict[str, bytes] = {}  # image ID, "repository:tag" or "*" (any image) -> what save() returns
        self.saves: list[str] = []  # every reference save() was asked for, in order
        self.builder: str | None = None  # the builder chosen; None: never asked (classic)
        for reference in bases:
            self.add_image(reference, platform=native)

    # --- the Executor protocol ---------------------------------------------------------------

    def ping(self, timeout: float | None = None) -> None:
        if not self.daemon_up:
            raise DaemonUnavailable("cannot reach the Docker daemon at fake://: the fake daemon is down")

    def build(self, request: BuildRequest, cancel: threading.Event, progress: Progress | None = None) -> BuildResult:
        self.ping()
        with self._lock:
            self.requests.append(request)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if progress is not None:
                progress(STEP)
            return self._build(request, cancel)
        finally:
            with self._lock:
                self.running -= 1

    def select_builder(self, choice: str) -> BuilderChoice:
        self.ping()
        if choice not in BUILDER_CHOICES:
            raise ValueError(f"no builder {choice!r}")
        with self._lock:
            self.selections.append(choice)
        if choice == "classic" or (choice == "auto" and not self.buildkit):
            warning = self.FALLBACK_WARNING if choice == "auto" else None
            self.builder = "classic"
            return BuilderChoice(name="classic", detail=self.CLASSIC_DETAIL, warning=warning)
        if not self.buildkit:
            raise BuildKitUnavailable(
                "--executor buildkit: the fake engine has no BuildKit (use --executor auto or classic)"
            )
        self.builder = "buildkit"
        return BuilderChoice(name="buildkit", detail=self.BUILDKIT_DETAIL)

    def inspect(self, reference: str) -> ImageInfo | None:
        self.ping()
        with self._lock:
            image = self._resolve(reference)
            return image.info() if image is not None else None

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self.ping()
        with self._lock:
            image = self._resolve(image_id)
            if image is None:
                raise OrchestratorError(f"the fake engine cannot tag {image_id}: no such image")
            self._point(f"{repository}:{tag}", image)

    def remove_image(self, reference: str) -> bool:
        return self.remove(reference)

    def native_platform(self) -> str:
        return self.native

    def is_local(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def pull(self, reference: str, platform: str) -> ImageInfo:
        self.ping()
        found = self._registry().fetch(reference)
        if found is None:
            raise TransferFailed(f"pull of {reference} failed: manifest unknown")
        self.add_image(reference, labels=found.labels, platform=found.platform)
        with self._lock:
            self.pulled.append(reference)
        info = self.inspect(reference)
        assert info is not None
        return info

    def push(self, reference: str) -> str:
        self.ping()
        with self._lock:
            image = self._resolve(reference)
        if image is None:
            raise TransferFailed(f"push of {reference} failed: no such image")
        stored = self._registry().store(reference, image.labels, image.platform)
        with self._lock:
            self.pushed.append(reference)
        return stored.digest

    def references(self) -> Mapping[str, ImageSummary]:
        with self._lock:
            return {
                ref: ImageSummary(image_id=image_id, labels=dict(self.images[image_id].labels))
                for ref, image_id in self._references.items()
            }

    def stored_images(self) -> tuple[StoredImage, ...]:
        with self._lock:
            return tuple(
                StoredImage(
                    image_id=image.image_id,
                    repo_tags=tuple(sorted(image.tags)),
                    labels=types.MappingProxyType(dict(image.labels)),
                    size=image.size,
                    created=image.created,
                )
                for image in sorted(self.images.values(), key=lambda i: i.image_id)
                if image.tags
            )

    def layers_size(self) -> int:
        """The sizes of the images held, summed (the fake shares no layers)."""
        with self._lock:
            return sum(image.size for image in self.images.values())

    def save(self, reference: str) -> IO[bytes]:
        """The tar ``archives`` holds for the image ``reference`` names (by any of its tags or its ID)."""
        if not self.daemon_up:
            raise DaemonUnavailable("the fake daemon is down")
        with self._lock:
            self.saves.append(reference)
            image = self._resolve(reference)
            if image is None:
                raise OrchestratorError(f"the fake engine has no image {reference}")
            archive = self.archives.get(image.image_id)
            if archive is None:
                archive = next((self.archives[t] for t in sorted(image.tags) if t in self.archives), None)
            if archive is None:
                archive = self.archives.get("*")
        if archive is None:
            raise OrchestratorError(f"the fake engine cannot save {reference}: no archive was prepared for it")
        return io.BytesIO(archive)

    # --- helpers for tests -------------------------------------------------------------------

    def add_image(
        self,
        reference: str,
        *,
        labels: Mapping[str, str] | None = None,
        platform: str = "linux/amd64",
        size: int = 0,
        created: int = 0,
    ) -> str:
        """Put an image the engine already has (a base, a cached build); returns its ID."""
        image_id = _image_id(reference, platform, labels or {})
        with self._lock:
            new = FakeImage(image_id, dict(labels or {}), platform, size=size, created=created)
            image = self.images.setdefault(image_id, new)
            self._point(reference, image)
        return image_id

    def remove(self, reference: str) -> bool:
        """``docker rmi``: untag a reference (the image goes with its last tag) or delete an image by ID."""
        with self._lock:
            image = self._resolve(reference)
            if image is None:
                return False
            names = {_full(reference)} if _full(reference) in image.tags else set(image.tags)
            for name in names:
                self._unpoint(name)
            if not image.tags:
                del self.images[image.image_id]
            return True

    @property
    def built(self) -> list[str]:
        """The images of the successful builds, in the order they finished."""
        with self._lock:
            return list(self._built)

    # --- internals ---------------------------------------------------------------------------

    def _registry(self) -> FakeRegistry:
        if self.registry is None:
            raise TransferFailed("the fake engine has no registry to pull from or push to")
        if not self.registry.up:
            raise TransferFailed(f"cannot reach {self.registry.address}: the fake registry is down")
        return self.registry

    def _build(self, request: BuildRequest, cancel: threading.Event) -> BuildResult:
        label = str(request.node.label)
        duration = self._durations.get(label, self._default_duration)
        if cancel.wait(duration) if duration > 0 else cancel.is_set():
            with self._lock:
                self.cancelled.append(request)
            raise self._failure(request, f"{request.node}: cancelled")
        if self._fails(request):
            raise self._failure(request, f"{request.node}: The command '/bin/sh -c make' returned a non-zero code: 2")
        if request.context_check is not None:
            _send_nowhere(request)
        image_id = _image_id(request.image, request.platform, dict(request.labels))
        with self._lock:
            self.images.setdefault(image_id, FakeImage(image_id, dict(request.labels), request.platform))
            self._built.append(request.image)
        self._log(request, [STEP, f"Successfully built {image_id[7:19]}"])
        return BuildResult(image_id=image_id, duration_s=duration, builder=self.builder or "classic")

    def _fails(self, request: BuildRequest) -> bool:
        if callable(self._fail):
            return self._fail(request)
        return str(request.node.label) in self._fail

    def _failure(self, request: BuildRequest, message: str) -> BuildFailed:
        lines = ["Step 1/1 : RUN make", "make: *** [all] Error 2", f"ERROR: {message}"]
        self._log(request, lines)
        return BuildFailed(message, log_path=request.log_path, log_tail="\n".join(lines))

    def _log(self, request: BuildRequest, lines: list[str]) -> None:
        if self._write_logs:
            path = Path(request.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")

    def _resolve(self, reference: str) -> FakeImage | None:
        """An image by ID (``sha256:...``, or its hex) or by reference (``name`` means ``name:latest``)."""
        if reference in self.images:
            return self.images[reference]
        if f"sha256:{reference}" in self.images:
            return self.images[f"sha256:{reference}"]
        image_id = self._references.get(_full(reference))
        return self.images[image_id] if image_id is not None else None

    def _point(self, reference: str, image: FakeImage) -> None:
        """Move ``reference`` to ``image`` (call with the lock held)."""
        reference = _full(reference)
        self._unpoint(reference)
        self._references[reference] = image.image_id
        image.tags.add(reference)

    def _unpoint(self, reference: str) -> None:
        old = self._references.pop(reference, None)
        if old is not None:
            self.images[old].tags.discard(reference)


def _send_nowhere(request: BuildRequest) -> None:
    """Write the request's context tar to a sink, with its ContextCheck (InputChanged when it fails)."""
    from orchestrator.engine.tarball import write_context_tar

    with open(os.devnull, "wb") as sink:
        write_context_tar(
            sink,
            request.context,
            dockerfile_path=request.dockerfile_path,
            dockerfile_text=request.dockerfile_text,
            extra_files=request.extra_files,
            check=request.context_check,
        )


def _full(reference: str) -> str:
    """``name`` -> ``name:latest``, as the engine reads it; a tag or digest is kept."""
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last or "@" in last else f"{reference}:latest"


def _image_id(reference: str, platform: str, labels: Mapping[str, str]) -> str:
    """A stable ID: the same request builds the same image, like a reproducible build."""
    text = "\0".join([reference, platform, *(f"{k}={v}" for k, v in sorted(labels.items()))])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


if TYPE_CHECKING:
    _conforms: Executor = FakeExecutor()
