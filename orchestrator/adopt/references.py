"""The references between the Dockerfiles of the tree, settled before anything is written.

Every tag another Dockerfile asks for (``FROM repo:tag``, ``COPY --from``, ``RUN --mount from=``;
``repo`` alone is ``latest``) is added to the image producing ``repo``, so that those references
are edges rather than errors. A ``repository:tag`` produced twice is a problem, and a reference
left external that ends like a repository made from a path gets a hint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import orchestrator.dockerfile as df
from orchestrator.adopt.mapping import MAPPING_FILE
from orchestrator.adopt.naming import valid_tag
from orchestrator.adopt.planned import PATH_ORIGIN, Candidate
from orchestrator.adopt.problems import Problem
from orchestrator.adopt.scan import image_references
from orchestrator.core.imageref import ImageReference
from orchestrator.core.model import ImageTarget, Target, WorkspaceSettings
from orchestrator.errors import OrchestratorError
from orchestrator.graph.graph import node_platforms


def add_asked_tags(
    root: Path,
    candidates: Sequence[Candidate],
    existing: Sequence[Target],
    settings: WorkspaceSettings,
    problems: list[Problem],
) -> None:
    """Give each repository the tags other Dockerfiles ask for, so that their references resolve."""
    producers: dict[str, list[Candidate]] = {}
    for c in candidates:
        producers.setdefault(c.repository, []).append(c)
    askers: list[tuple[str, str | None, list[tuple[str, int]]]] = [(c.path, c.repository, c.refs) for c in candidates]
    for target in existing:
        if isinstance(target, ImageTarget):
            askers.append((target.dockerfile, target.repository, _existing_refs(root, target, settings)))
    for path, own, refs in askers:
        for reference, line in refs:
            parsed = ImageReference.parse(reference)
            if parsed.digest is not None or parsed.tag is None or parsed.repository == own:
                continue  # a reference to its own repository is left for the graph to report
            owners = producers.get(parsed.repository, [])
            if not owners or any(parsed.tag in o.tags for o in owners):
                continue
            if len(owners) > 1:
                names = " and ".join(o.path for o in owners)
                problems.append(
                    Problem(
                        f"{path}:{line}",
                        f"{reference}: {names} both produce {parsed.repository}, so which one gets the tag "
                        f"{parsed.tag!r} is not clear; give the tags in {MAPPING_FILE}",
                    )
                )
            elif valid_tag(parsed.tag):
                owners[0].asked_by.setdefault(parsed.tag, set()).add(path)
    for c in candidates:
        c.tags += sorted(c.asked_by.keys() - set(c.tags))


def _existing_refs(root: Path, target: ImageTarget, settings: WorkspaceSettings) -> list[tuple[str, int]]:
    try:
        text = df.read(root / target.dockerfile, path=target.dockerfile)
        platforms = node_platforms(target, settings)
        return image_references(text, target.dockerfile, target.build_args, target.target, platforms)[0]
    except (OrchestratorError, OSError):
        return []  # the graph check reports it


def check_unique(candidates: Sequence[Candidate], existing: Sequence[Target], problems: list[Problem]) -> None:
    """Each ``repository:tag`` is produced by one image only, planned or already declared."""
    producers: dict[str, list[str]] = {}
    for c in candidates:
        for tag in c.tags:
            producers.setdefault(f"{c.repository}:{tag}", []).append(c.path)
    owners = {reference: target for target in existing for reference in target.references}
    for reference, paths in sorted(producers.items()):
        for path in paths:
            others = [p for p in paths if p != path]
            if others:
                problems.append(Problem(path, f"{reference} is also produced by {', '.join(others)}"))
            if reference in owners:
                owner = owners[reference]
                problems.append(Problem(path, f"{reference} is already produced by {owner.label} ({owner.build_file})"))


def near_misses(candidates: Sequence[Candidate], existing: Sequence[Target]) -> list[str]:
    """Hints for references that stay external but end like a repository taken from a path."""
    produced = {c.repository for c in candidates} | {t.repository for t in existing}
    by_last: dict[str, list[Candidate]] = {}
    for c in candidates:
        if c.origin == PATH_ORIGIN:
            by_last.setdefault(c.repository.rsplit("/", 1)[-1], []).append(c)
    hints: dict[tuple[str, str, str], int] = {}  # (asker, reference, candidate) -> first line
    for asker in candidates:
        for reference, line in asker.refs:
            repository = ImageReference.parse(reference).repository
            if repository in produced:
                continue
            for c in by_last.get(repository.rsplit("/", 1)[-1], []):
                if c is not asker:
                    key = (asker.path, reference, c.path)
                    hints[key] = min(line, hints.get(key, line))
    return [
        f"{path}:{line}: {reference} is an external base; if it means {producer}, "
        f"map that Dockerfile to repository = {json.dumps(ImageReference.parse(reference).repository)} "
        f"in {MAPPING_FILE}"
        for (path, reference, producer), line in sorted(hints.items(), key=lambda item: (item[0][0], item[1]))
    ]
