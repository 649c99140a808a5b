"""Planning the adoption of a tree: :func:`plan` runs every step and checks the result the way the
loader will, before anything is written.

The steps: scan the tree, read the mapping, read each Dockerfile, give each one a target name,
repository and tags, infer the repositories of Dockerfiles that unmapped references name (``inference``),
add the tags other Dockerfiles ask for, then make the targets with the rule the
loader calls (:func:`orchestrator.workspace.buildfile.rules.image`) and put them through
:func:`orchestrator.graph.graph.build_graph`. Every problem found on the way is collected and raised at
once as :class:`InitProblems`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path

from orchestrator.adopt.assign import assign_names, choose_repositories
from orchestrator.adopt.inference import infer_repositories
from orchestrator.adopt.mapping import MAPPING_FILE, read_mapping
from orchestrator.adopt.naming import target_name
from orchestrator.adopt.planned import InitPlan, PlannedImage
from orchestrator.adopt.problems import InitProblems, Problem, graph_problems, problem_from, shown_path
from orchestrator.adopt.references import add_asked_tags, check_unique, near_misses
from orchestrator.adopt.scan import collect_candidates, scan_tree
from orchestrator.adopt.writing import planned_files
from orchestrator.core.model import Target, WorkspaceSettings
from orchestrator.errors import LoadInterrupted, OrchestratorError, WorkspaceError
from orchestrator.graph.graph import build_graph
from orchestrator.workspace.buildfile.loader import load_packages, load_settings
from orchestrator.workspace.buildfile.rules import PackageContext
from orchestrator.workspace.buildfile.rules import image as image_rule
from orchestrator.workspace.root import WORKSPACE_FILES, find_packages


def plan(root: Path, *, mapping: Path | None = None, force: bool = False) -> InitPlan:
    """What ``init`` would write in ``root``, checked; raises :class:`InitProblems`."""
    root = root.resolve()
    if not root.is_dir():
        raise WorkspaceError(f"{root} is not a directory")
    problems: list[Problem] = []
    notes: list[str] = []
    scan = scan_tree(root)
    entries = read_mapping(root, mapping, problems)
    has_workspace = any((root / name).is_file() for name in WORKSPACE_FILES)
    settings = WorkspaceSettings(name=target_name(root.name))
    if has_workspace:
        try:
            settings = load_settings(root)
        except LoadInterrupted:
            raise  # Ctrl-C / SIGTERM while evaluating: not a problem of the tree
        except OrchestratorError as error:
            problems.append(problem_from(error))
    candidates = collect_candidates(root, scan, entries, settings, problems)
    if not candidates and not problems:
        reason = "no Dockerfile to adopt"
        if scan.left_alone:
            reason += f" (left alone, hand-written: {', '.join(scan.left_alone)})"
        problems.append(Problem(".", reason))
    assign_names(root, candidates, problems)
    mapping_name = shown_path(root, mapping) if mapping is not None else MAPPING_FILE
    choose_repositories(candidates, mapping_name, problems, notes)
    existing = _load(root, [p for p in find_packages(root) if p not in scan.dockerfiles], problems)
    infer_repositories(candidates, existing, mapping_name, problems)
    add_asked_tags(root, candidates, existing, settings, problems)
    check_unique(candidates, existing, problems)
    notes += near_misses(candidates, existing)
    if problems:
        raise InitProblems(problems)

    images = tuple(c.planned() for c in candidates)
    files, keep = planned_files(root, images, scan, force=force, has_workspace=has_workspace)
    targets = [*existing, *_load(root, sorted(keep), problems), *_targets(root, images, keep, problems)]
    try:
        graph = build_graph(root, targets, settings)
    except OrchestratorError as error:
        problems.extend(graph_problems(error, images))
    if problems:
        raise InitProblems(problems)
    return InitPlan(
        root=root,
        files=files,
        images=images,
        graph=graph,
        notes=tuple(notes),
        left_alone=tuple(scan.left_alone),
    )


def _load(root: Path, packages: Sequence[str], problems: list[Problem]) -> list[Target]:
    """The targets the BUILD files of ``packages`` declare (hand-written, or generated and kept)."""
    if not packages:
        return []
    try:
        return [t for p in load_packages(root, packages) for t in p.targets]
    except LoadInterrupted:
        raise
    except OrchestratorError as error:
        problems.append(problem_from(error))
        return []


def _targets(root: Path, images: Sequence[PlannedImage], keep: set[str], problems: list[Problem]) -> list[Target]:
    """The targets the planned BUILD files declare, made by the rule the loader calls."""
    contexts: dict[str, PackageContext] = {}
    for image in images:
        if image.package in keep:
            continue
        build_file = posixpath.join(image.package, "BUILD")
        ctx = contexts.setdefault(
            image.package, PackageContext(root=root, package=image.package, build_file=build_file)
        )
        try:
            image_rule(ctx, **image.attributes())
        except OrchestratorError as error:
            problems.append(Problem(image.dockerfile, error.message))
    return [t for ctx in contexts.values() for t in ctx.targets.values()]
