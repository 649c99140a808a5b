"""Frozen values passed between the modules: targets as read from BUILD files, and graph nodes.

Paths in targets are POSIX paths relative to the workspace root, so nothing here depends on where
the workspace lives on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.core.engines import EngineSpec
from orchestrator.core.label import Label

Pairs = tuple[tuple[str, str], ...]
# How images are built (``--executor``, ``workspace(executor = ...)``); engine/api.py's BUILDER_CHOICES
# are the same (a test holds them equal: the workspace layer cannot import the engine's)
EXECUTOR_CHOICES = ("auto", "buildkit", "classic")
ATTESTATION_CHOICES = ("sbom", "provenance")  # workspace(attestations = ...), --attest: only sbom is made yet


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageTarget:
    """``image()``: an image built from a Dockerfile."""

    label: Label
    dockerfile: str  # workspace-relative
    context: str  # workspace-relative directory ("" is the root)
    srcs: tuple[str, ...] | None  # context-relative declared inputs, or None: the filtered context
    repository: str
    tags: tuple[str, ...]
    build_args: Pairs
    target: str | None
    platforms: tuple[str, ...] | None
    labels: Pairs
    base: tuple[Label, ...] | None
    hermetic: bool | None
    lint_ignore: Pairs = ()  # (rule, reason): lint findings this target silences
    # (id, "env:NAME" | "file:<workspace-relative path>"), sorted: where each build secret's value
    # is, never the value (BuildKit only; only the ids enter the key)
    secrets: Pairs = ()
    ssh: tuple[str, ...] = ()  # ssh agent ids forwarded to RUN --mount=type=ssh (BuildKit only)
    build_file: str = field(compare=False)  # workspace-relative BUILD file, for messages

    kind = "image"

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(f"{self.repository}:{tag}" for tag in self.tags)


@dataclass(frozen=True, slots=True, kw_only=True)
class RootfsTarget:
    """``rootfs_image()``: a single-layer image from a root filesystem tarball."""

    label: Label
    tarball: str | None  # workspace-relative
    script: str | None  # workspace-relative host script writing the tarball
    srcs: tuple[str, ...]  # workspace-relative inputs of the script
    repository: str
    tags: tuple[str, ...]
    platforms: tuple[str, ...] | None
    labels: Pairs
    build_file: str = field(compare=False)

    kind = "rootfs_image"

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(f"{self.repository}:{tag}" for tag in self.tags)


Target = ImageTarget | RootfsTarget


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageTestTarget:
    """``image_test()``: checks run against the image of another target (not a node of the graph)."""

    label: Label
    image: str  # a label or an image reference some target produces, as written
    spec: str  # the checks, canonical JSON (orchestrator.core.testspec)
    platforms: tuple[str, ...] | None  # default: every platform of the image
    build_file: str = field(compare=False)

    kind = "image_test"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceSettings:
    """What ``workspace()`` in the WORKSPACE file says."""

    name: str = ""
    platforms: tuple[str, ...] = ()
    registry: str | None = None
    require_registry: bool = False  # an unusable registry cache fails the build (CI), not a warning
    hermetic: bool = False
    cache_dir: str | None = None  # relative to the workspace root unless absolute
    key_digest: str = "xxh3"
    eval_timeout_s: float = 60.0  # per BUILD / .star evaluation
    eval_memory_mb: int = 2048  # per BUILD / .star evaluation
    engine_timeout_s: float = 120.0  # how long an engine may not answer a ping during a build
    # fnmatch patterns over "repository:tag": references that stay external bases although a target
    # produces other tags of their repository
    external_images: tuple[str, ...] = ()
    executor: str = "auto"  # one of EXECUTOR_CHOICES: BuildKit when it works, else classic
    engines: tuple[EngineSpec, ...] = ()  # where to build; --engine replaces them (core/engines.py)
    attestations: tuple[str, ...] = ()  # made by every build after it (ATTESTATION_CHOICES); no key input
    scan: str | None = None  # the scan gate's command, ``{ref}`` for the content tag (pipeline/scan.py); no key input
    scan_timeout_s: float = 1800.0  # a scan still running after this long fails its node


@dataclass(frozen=True, slots=True, order=True)
class Node:
    """One (target, platform): the unit that is keyed, built and cached."""

    label: Label
    platform: str

    def __str__(self) -> str:
        return f"{self.label} {self.platform}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedPackage:
    package: str
    build_file: str  # workspace-relative
    loads: tuple[str, ...]  # workspace-relative .star files this BUILD file loaded (transitively)
    targets: tuple[Target, ...]
    tests: tuple[ImageTestTarget, ...] = ()
