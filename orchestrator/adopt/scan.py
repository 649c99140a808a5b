"""Finding the Dockerfiles init adopts, and reading from each one what the plan needs.

:func:`scan_tree` sorts every directory holding Dockerfiles: to adopt, adopted earlier (its BUILD
file carries init's header) or left alone (a hand-written BUILD file). :func:`collect_candidates`
reads each Dockerfile to adopt: the images it references and the LABELs of its built stages.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orchestrator.dockerfile as df
from orchestrator.adopt.mapping import MappingEntry
from orchestrator.adopt.planned import Candidate
from orchestrator.adopt.problems import Problem, problem_from
from orchestrator.adopt.render import is_generated
from orchestrator.core.label import Label
from orchestrator.core.model import Pairs, WorkspaceSettings
from orchestrator.core.platforms import host_platform, normalize
from orchestrator.errors import OrchestratorError, UnknownTargetError
from orchestrator.workspace.root import BUILD_FILES

_SKIPPED_DIRS = frozenset({"node_modules", "venv", "__pycache__"})  # and every hidden one (.git, .venv)
_NOT_DOCKERFILES = frozenset({"bak", "orig", "rej", "swp", "swo", "tmp", "old", "dockerignore"})


@dataclass(frozen=True, slots=True)
class Scan:
    dockerfiles: dict[str, list[str]]  # package -> Dockerfile names, plain "Dockerfile" first
    generated: set[str]  # packages whose BUILD file init wrote
    left_alone: list[str]  # hand-written BUILD files next to Dockerfiles


def dockerfile_suffix(filename: str) -> str | None:
    """``""`` for ``Dockerfile``, ``dev`` for ``Dockerfile.dev`` and ``dev.Dockerfile``, else None."""
    if filename == "Dockerfile":
        return ""
    if filename.startswith("Dockerfile."):
        suffix = filename.removeprefix("Dockerfile.")
    elif filename.endswith(".Dockerfile"):
        suffix = filename.removesuffix(".Dockerfile")
    else:
        return None
    if not suffix or suffix.rsplit(".", 1)[-1].lower() in _NOT_DOCKERFILES:
        return None
    return suffix


def scan_tree(root: Path) -> Scan:
    found: dict[str, list[str]] = {}
    generated: set[str] = set()
    left_alone: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(root / rel if rel else root) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            continue
        names = [e.name for e in entries if e.is_file() and dockerfile_suffix(e.name) is not None]
        builds = [e.name for e in entries if e.name in BUILD_FILES and e.is_file()]
        if names:
            if builds == ["BUILD"] and is_generated(root / rel / "BUILD"):
                generated.add(rel)
                found[rel] = sorted(names, key=lambda n: (n != "Dockerfile", n))
            elif builds:
                left_alone.append(posixpath.join(rel, builds[0]))
            else:
                found[rel] = sorted(names, key=lambda n: (n != "Dockerfile", n))
        for entry in reversed(entries):
            if (
                entry.is_dir(follow_symlinks=False)
                and not entry.name.startswith(".")
                and entry.name not in _SKIPPED_DIRS
            ):
                stack.append(posixpath.join(rel, entry.name))
    return Scan(dict(sorted(found.items())), generated, sorted(left_alone))


def collect_candidates(
    root: Path,
    scan: Scan,
    entries: Mapping[str, MappingEntry],
    settings: WorkspaceSettings,
    problems: list[Problem],
) -> list[Candidate]:
    """A :class:`Candidate` per Dockerfile to adopt, read; a mapping entry naming none is a problem."""
    found: dict[str, Candidate] = {}
    seen: set[str] = set()  # every Dockerfile found, adoptable or not
    for package, filenames in scan.dockerfiles.items():
        if not _valid_package(package):
            for filename in filenames:
                reason = f"the directory {package!r} cannot be a package: use letters, digits and _.+=,@~- in its name"
                problems.append(Problem(posixpath.join(package, filename), reason))
                seen.add(posixpath.join(package, filename))
            continue
        for filename in filenames:
            path = posixpath.join(package, filename)
            entry = entries.get(path, MappingEntry())
            chosen = entry.platforms or settings.platforms or (host_platform(),)
            platforms = tuple(sorted({normalize(p) for p in chosen}))
            candidate = Candidate(package=package, filename=filename, path=path, entry=entry, platforms=platforms)
            try:
                _read_dockerfile(root, candidate)
            except OrchestratorError as error:
                problems.append(problem_from(error))
            except OSError as exc:
                problems.append(Problem(path, f"cannot read: {exc}"))
            found[path] = candidate
            seen.add(path)
    for path in sorted(entries.keys() - seen):
        reason = "the mapping names a Dockerfile that does not exist"
        if (root / path).is_file():
            reason = "the mapping names a file init does not adopt (not a Dockerfile, in a skipped directory, "
            reason += "or next to a hand-written BUILD file)"
        problems.append(Problem(path, reason))
    return list(found.values())


def _valid_package(package: str) -> bool:
    try:
        Label.parse(f"//{package}:x")
    except UnknownTargetError:
        return False
    return True


def _read_dockerfile(root: Path, candidate: Candidate) -> None:
    text = df.read(root / candidate.path, path=candidate.path)
    entry = candidate.entry
    candidate.refs, info = image_references(text, candidate.path, entry.build_args, entry.target, candidate.platforms)
    candidate.labels = _built_labels(text, info, candidate.path)


def image_references(
    text: str, path: str, build_args: Pairs, target: str | None, platforms: Sequence[str]
) -> tuple[list[tuple[str, int]], df.DockerfileInfo]:
    """The image references (and their lines) the built stages use on any of ``platforms``."""
    refs: dict[tuple[str, int], None] = {}
    for platform in platforms:
        info = df.analyze(text, path=path, build_args=dict(build_args), target=target, platform=platform)
        refs.update(dict.fromkeys((ref.reference, ref.line) for ref in info.image_refs))
    return list(refs), info


def _built_labels(text: str, info: df.DockerfileInfo, path: str) -> dict[str, str | None]:
    """The LABELs of the built stage and the stages it is FROM (the later one wins)."""
    configs = df.stage_configs(text, path=path)
    labels: dict[str, str | None] = {}
    for index in reversed(info.stage_chain()):
        labels.update(configs[index].labels)
    return labels
