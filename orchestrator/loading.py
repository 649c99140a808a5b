"""From a directory to a validated TargetGraph: find the root, read WORKSPACE and BUILD files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.buildfile.loader import LoadedPackage, load_packages, load_settings
from orchestrator.errors import WorkspaceError
from orchestrator.graph import TargetGraph, build_graph
from orchestrator.workspace import WORKSPACE_FILES, Workspace, find_packages, find_root


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedWorkspace:
    workspace: Workspace
    packages: tuple[LoadedPackage, ...]
    graph: TargetGraph

    @property
    def root(self) -> Path:
        return self.workspace.root


def load(start: Path, *, explicit_root: Path | None = None) -> LoadedWorkspace:
    if explicit_root is None:
        root = find_root(start)
    else:
        root = explicit_root.resolve()
        if not any((root / name).is_file() for name in WORKSPACE_FILES):
            raise WorkspaceError(f"--workspace {explicit_root}: no WORKSPACE file in {root}")
    settings = load_settings(root)
    workspace = Workspace(root=root, settings=settings)
    packages = tuple(load_packages(root, find_packages(root)))
    targets = [t for p in packages for t in p.targets]
    return LoadedWorkspace(workspace=workspace, packages=packages, graph=build_graph(root, targets, settings))
