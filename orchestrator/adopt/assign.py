"""Each Dockerfile's target name, repository and own tags; for the repository and tags, first match wins:

1. the mapping file;
2. LABELs of the built stage chain: ``org.orchestrator.repository`` or else
   ``org.opencontainers.image.title`` for the repository, ``org.opencontainers.image.version`` for a
   tag (plus ``latest``); a value holding a variable is not used;
3. the path: the directory relative to the root (``base/python``), ``tags = ["latest"]``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path

from orchestrator.adopt.naming import path_repository, target_name, valid_repository, valid_tag
from orchestrator.adopt.planned import Candidate
from orchestrator.adopt.problems import Problem
from orchestrator.adopt.scan import dockerfile_suffix

TITLE_LABEL = "org.opencontainers.image.title"
REPOSITORY_LABEL = "org.orchestrator.repository"
VERSION_LABEL = "org.opencontainers.image.version"


def assign_names(root: Path, candidates: Sequence[Candidate], problems: list[Problem]) -> None:
    """Target names, unique per package: names from the mapping first, then the derived ones.

    Also gives each candidate the repository its path makes, the default of :func:`choose_repositories`.
    """
    taken: dict[tuple[str, str], str] = {}
    for c in candidates:
        if c.entry.name is not None:
            if (c.package, c.entry.name) in taken:
                other = taken[c.package, c.entry.name]
                problems.append(Problem(c.path, f"the mapping names it {c.entry.name!r}, as it names {other}"))
            taken[c.package, c.entry.name] = c.path
            c.name = c.entry.name
    for c in candidates:
        directory = posixpath.basename(c.package) if c.package else root.name
        suffix = dockerfile_suffix(c.filename)
        base = target_name(f"{directory}-{suffix}" if suffix else directory)
        default, n = base, 1
        while (c.package, default) in taken and taken[c.package, default] != c.path:
            n += 1
            default = f"{base}-{n}"
        taken.setdefault((c.package, default), c.path)
        c.name = c.name or default
        c.repository = path_repository(c.package or root.name, default)


def choose_repositories(
    candidates: Sequence[Candidate], mapping_name: str, problems: list[Problem], notes: list[str]
) -> None:
    """Repository and tags from the mapping, else the LABELs; the path's repository stays otherwise."""
    for c in candidates:
        labels = c.labels
        if c.entry.repository is not None:
            c.repository, c.origin = c.entry.repository, mapping_name
        elif REPOSITORY_LABEL in labels:
            value = labels[REPOSITORY_LABEL]
            if value is not None and valid_repository(value):
                c.repository, c.origin = value, f"LABEL {REPOSITORY_LABEL}"
            else:
                problems.append(Problem(c.path, f"LABEL {REPOSITORY_LABEL}={value or '$...'!r} is not a repository"))
        elif (title := labels.get(TITLE_LABEL)) is not None and valid_repository(title):
            c.repository, c.origin = title, f"LABEL {TITLE_LABEL}"
        elif TITLE_LABEL in labels:
            notes.append(f"{c.path}: LABEL {TITLE_LABEL}={title or '$...'!r} is not a repository; using the path")
        if c.entry.tags is not None:
            c.tags = list(c.entry.tags)
        elif (version := labels.get(VERSION_LABEL)) is not None and valid_tag(version):
            c.tags = list(dict.fromkeys([version, "latest"]))
        else:
            if VERSION_LABEL in labels:
                notes.append(f"{c.path}: LABEL {VERSION_LABEL}={version or '$...'!r} is not a tag; not used")
            c.tags = ["latest"]
