"""Writing a plan: what happens to each file (``--force`` rewrites only files init generated), then
:func:`apply` writes them (nothing at all while a generated file differs and ``--force`` is not given),
loads the workspace with the normal loader and, should anything fail, puts every file back as it was."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path

from orchestrator.adopt.naming import target_name
from orchestrator.adopt.planned import FileAction, InitPlan, PlannedFile, PlannedImage
from orchestrator.adopt.problems import InitProblems, OutOfDateBuildFiles, graph_problems
from orchestrator.adopt.render import render_build, render_workspace
from orchestrator.adopt.scan import Scan
from orchestrator.errors import OrchestratorError
from orchestrator.workspace.loading import LoadedWorkspace, load


def planned_files(
    root: Path, images: Sequence[PlannedImage], scan: Scan, *, force: bool, has_workspace: bool
) -> tuple[tuple[PlannedFile, ...], set[str]]:
    """The files to write and the packages whose generated BUILD file is kept as it is."""
    files: list[PlannedFile] = []
    keep: set[str] = set()
    if not has_workspace:
        files.append(
            PlannedFile(path="WORKSPACE", text=render_workspace(target_name(root.name)), action=FileAction.CREATE)
        )
    by_package: dict[str, list[PlannedImage]] = {}
    for image in images:
        by_package.setdefault(image.package, []).append(image)
    for package, package_images in sorted(by_package.items()):
        path = posixpath.join(package, "BUILD")
        text = render_build(package_images)
        action = FileAction.CREATE
        if package in scan.generated:
            if (root / path).read_text(encoding="utf-8") == text:
                action = FileAction.UNCHANGED
            elif force:
                action = FileAction.OVERWRITE
            else:
                action = FileAction.KEEP
                keep.add(package)
        files.append(PlannedFile(path=path, text=text, action=action, images=len(package_images)))
    return tuple(files), keep


def apply(init_plan: InitPlan) -> LoadedWorkspace:
    """Write the planned files, then load the workspace; on any failure put every file back.

    Raises :class:`OutOfDateBuildFiles`, writing nothing, when a BUILD file init generated earlier
    differs from the plan and ``--force`` was not given.
    """
    kept = [f.path for f in init_plan.files if f.action is FileAction.KEEP]
    if kept:
        raise OutOfDateBuildFiles(kept)
    written: list[tuple[Path, str | None]] = []  # (path, its text before, None: it did not exist)
    try:
        for planned in init_plan.to_write:
            path = init_plan.root / planned.path
            written.append((path, path.read_text(encoding="utf-8") if path.exists() else None))
            path.write_text(planned.text, encoding="utf-8")
        return load(init_plan.root, explicit_root=init_plan.root, use_cache=False)
    except BaseException as error:
        for path, before in reversed(written):
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(before, encoding="utf-8")
        if isinstance(error, OrchestratorError):
            raise InitProblems(graph_problems(error, init_plan.images)) from None
        raise
