"""References to the tree's own images that neither the mapping nor a LABEL maps, inferred from the tree.

A reference ``repo:tag`` that no image declares *looks in-family* when ``repo`` names a directory of the
tree (its path, or the end of its path) holding a Dockerfile other than the one asking.
It maps to the one Dockerfile under such a directory whose path below it holds every dash-separated part
of the tag as a segment (``bookworm-curl`` -> ``bookworm/curl/``, ``latest`` -> the directory itself);
a directory holding exactly those segments wins over one holding more, and ``Dockerfile`` over its
siblings. That Dockerfile then produces ``repo`` with the tags asked for.

Only Dockerfiles whose repository comes from their path are mapped this way. When ``repo`` is not
produced by any Dockerfile otherwise, a reference that looks in-family and cannot be mapped is a
:class:`Problem` naming the ``images.toml`` entry that would map it; when it is, the producer gets the
tag (:func:`orchestrator.adopt.references.add_asked_tags`).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence

from orchestrator.adopt.naming import valid_tag
from orchestrator.adopt.planned import PATH_ORIGIN, Candidate
from orchestrator.adopt.problems import Problem
from orchestrator.core.imageref import ImageReference
from orchestrator.core.model import Target


def infer_repositories(
    candidates: Sequence[Candidate], existing: Sequence[Target], mapping_name: str, problems: list[Problem]
) -> None:
    """Give the Dockerfile an unmapped in-family reference names its repository and tag, or report it."""
    produced = {c.repository for c in candidates} | {t.repository for t in existing}  # before inferring
    declared = {reference for t in existing for reference in t.references}
    inferred: dict[str, str] = {}  # Dockerfile path -> the repository inferred for it
    for asker in candidates:
        for reference, line in asker.refs:
            parsed = ImageReference.parse(reference)
            if parsed.digest is not None or parsed.tag is None or not valid_tag(parsed.tag):
                continue  # a bad tag is the loader's to report
            if f"{parsed.repository}:{parsed.tag}" in declared or any(
                c.repository == parsed.repository and parsed.tag in c.tags for c in candidates
            ):
                continue  # the mapping, a LABEL, the path or an earlier inference gives it
            directories = _named_directories(parsed.repository, candidates, asker)
            if not directories:
                continue  # stays an external base (or gets the tag from its producer, see references)
            matches = _matches(parsed.tag, directories, candidates, asker)
            if len(matches) == 1 and _assignable(matches[0], parsed.repository, inferred):
                _assign(matches[0], parsed.repository, parsed.tag, asker.path, inferred, directories)
            elif parsed.repository not in produced:  # else its producer gets the tag, as before
                where = f"{asker.path}:{line}"
                under = [c.path for c in candidates if c is not asker and _below(c.package, directories)]
                problems.append(_unmapped(where, parsed, directories, matches, under, mapping_name))


def _named_directories(repository: str, candidates: Sequence[Candidate], asker: Candidate) -> list[str]:
    """The directories ``repository`` names (the path, or its end) that hold a Dockerfile besides ``asker``."""
    found: set[str] = set()
    for c in candidates:
        if c is asker or not c.package:
            continue
        parts = c.package.split("/")
        for end in range(1, len(parts) + 1):
            directory = "/".join(parts[:end])
            if directory == repository or directory.endswith("/" + repository):
                found.add(directory)
    return sorted(found)


def _matches(
    tag: str, directories: Sequence[str], candidates: Sequence[Candidate], asker: Candidate
) -> list[Candidate]:
    """The Dockerfiles under ``directories`` whose path below holds every part of ``tag``, best first."""
    wanted = [] if tag == "latest" else tag.split("-")
    found: list[tuple[Candidate, int]] = []  # (candidate, segments beyond the wanted ones)
    for c in candidates:
        if c is asker:
            continue
        for directory in directories:
            if not _below(c.package, [directory]):
                continue
            below = posixpath.relpath(c.package, directory)
            segments = [] if below == "." else below.split("/")
            if all(part in segments for part in wanted):
                found.append((c, len(segments) - len(set(wanted))))
    if not found:
        return []
    fewest = min(extra for _, extra in found)
    best = [c for c, extra in found if extra == fewest]
    by_package: dict[str, list[Candidate]] = {}
    for c in best:
        by_package.setdefault(c.package, []).append(c)
    chosen: list[Candidate] = []
    for package_candidates in by_package.values():
        plain = [c for c in package_candidates if c.filename == "Dockerfile"]
        chosen += plain or package_candidates
    return sorted(chosen, key=lambda c: c.path)


def _below(package: str, directories: Sequence[str]) -> bool:
    return any(package == d or package.startswith(d + "/") for d in directories)


def _assignable(candidate: Candidate, repository: str, inferred: dict[str, str]) -> bool:
    """Whether ``candidate`` may produce ``repository``: its own repository came from its path."""
    return inferred.get(candidate.path, repository) == repository and (
        candidate.origin == PATH_ORIGIN or candidate.repository == repository
    )


def _assign(
    candidate: Candidate, repository: str, tag: str, asker: str, inferred: dict[str, str], directories: Sequence[str]
) -> None:
    if candidate.path not in inferred and candidate.repository != repository:
        inferred[candidate.path] = repository
        candidate.repository = repository
        candidate.origin = f"the tree ({repository} names the directory {', '.join(directories)})"
        if candidate.entry.tags is None:
            candidate.tags = []  # the path's "latest" would clash with the other images of the repository
    if tag not in candidate.tags:
        candidate.tags.append(tag)
    candidate.asked_by.setdefault(tag, set()).add(asker)


def _unmapped(
    where: str,
    parsed: ImageReference,
    directories: Sequence[str],
    matches: Sequence[Candidate],
    under: Sequence[str],
    mapping_name: str,
) -> Problem:
    named = ", ".join(f"{d}/" for d in directories)
    if not matches:
        why = f"no Dockerfile under {named} has the path {_wanted_path(parsed.tag)}"
        paths = list(under) if 0 < len(under) <= 3 else ["path/to/Dockerfile"]
    elif len(matches) > 1:
        why = f"it could be {' or '.join(m.path for m in matches)}"
        paths = [m.path for m in matches]
    else:
        why = f"{matches[0].path} already produces {matches[0].repository}"
        paths = [matches[0].path]
    entry = f"repository = {json.dumps(parsed.repository)}, tags = [{json.dumps(parsed.tag)}]"
    entries = " or ".join(f"[images.{json.dumps(p)}] {entry}" for p in paths)
    return Problem(
        where,
        f"{parsed.repository}:{parsed.tag} looks like an image of this tree ({parsed.repository} names {named}) "
        f"but cannot be mapped: {why}; add to {mapping_name}: {entries}",
    )


def _wanted_path(tag: str | None) -> str:
    if tag is None or tag == "latest":
        return "of the directory itself"
    return "/".join(["...", *tag.split("-")]) + "/"
