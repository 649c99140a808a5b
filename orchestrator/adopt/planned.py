"""The values of a plan: a :class:`Candidate` per Dockerfile, filled in step by step while planning,
and what :func:`orchestrator.adopt.plan` returns (an :class:`InitPlan` of planned images and files)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.adopt.mapping import MappingEntry
from orchestrator.core.label import Label
from orchestrator.core.model import Pairs
from orchestrator.graph.graph import TargetGraph

PATH_ORIGIN = "the path"  # where a repository comes from when neither the mapping nor a LABEL gives it


class FileAction(StrEnum):
    """What ``init`` does with one BUILD or WORKSPACE file."""

    CREATE = "create"
    OVERWRITE = "overwrite"  # generated earlier, --force
    UNCHANGED = "unchanged"  # generated earlier, the same as now
    KEEP = "keep"  # generated earlier, differs from now, no --force


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedImage:
    """One ``image()`` to write, and where its repository and extra tags came from."""

    package: str
    dockerfile: str  # root-relative
    name: str
    repository: str
    tags: tuple[str, ...]
    build_args: Pairs = ()
    target: str | None = None
    platforms: tuple[str, ...] | None = None
    origin: str = field(default=PATH_ORIGIN, compare=False)  # of the repository
    asked_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)  # added tag -> Dockerfiles

    @property
    def label(self) -> Label:
        return Label(self.package, self.name)

    def attributes(self) -> dict[str, Any]:
        """The keyword arguments of the ``image()`` call, in the order they are written."""
        attrs: dict[str, Any] = {"name": self.name}
        filename = posixpath.basename(self.dockerfile)
        if filename != "Dockerfile":
            attrs["dockerfile"] = filename
        attrs["repository"] = self.repository
        attrs["tags"] = list(self.tags)
        if self.build_args:
            attrs["build_args"] = dict(self.build_args)
        if self.target is not None:
            attrs["target"] = self.target
        if self.platforms is not None:
            attrs["platforms"] = list(self.platforms)
        return attrs


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedFile:
    path: str  # root-relative
    text: str
    action: FileAction
    images: int = 0  # image() calls in it (0 for WORKSPACE)


@dataclass(frozen=True, slots=True, kw_only=True)
class InitPlan:
    root: Path
    files: tuple[PlannedFile, ...]  # WORKSPACE (only when there is none) and the BUILD files, sorted
    images: tuple[PlannedImage, ...]
    graph: TargetGraph  # the workspace as it will load, built without writing anything
    notes: tuple[str, ...] = ()  # worth saying, not blocking
    left_alone: tuple[str, ...] = ()  # BUILD files not written by init, next to Dockerfiles

    @property
    def to_write(self) -> tuple[PlannedFile, ...]:
        return tuple(f for f in self.files if f.action in (FileAction.CREATE, FileAction.OVERWRITE))


@dataclass(slots=True)
class Candidate:
    """A Dockerfile on its way to a :class:`PlannedImage`; each planning step fills in its part."""

    package: str
    filename: str
    path: str  # root-relative
    entry: MappingEntry
    platforms: tuple[str, ...]
    refs: list[tuple[str, int]] = field(default_factory=list)  # (reference, line) over every platform
    labels: dict[str, str | None] = field(default_factory=dict)  # None: set from a variable
    name: str = ""
    repository: str = ""
    origin: str = PATH_ORIGIN
    tags: list[str] = field(default_factory=list)
    asked_by: dict[str, set[str]] = field(default_factory=dict)

    def planned(self) -> PlannedImage:
        return PlannedImage(
            package=self.package,
            dockerfile=self.path,
            name=self.name,
            repository=self.repository,
            tags=tuple(self.tags),
            build_args=self.entry.build_args,
            target=self.entry.target,
            platforms=self.entry.platforms,
            origin=self.origin,
            asked_by={tag: tuple(sorted(paths)) for tag, paths in sorted(self.asked_by.items())},
        )
