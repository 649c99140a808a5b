"""From a directory to a validated TargetGraph: find the root, read WORKSPACE and BUILD files."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cache.store import Store
from orchestrator.cache.witness import Witness
from orchestrator.core.model import LoadedPackage, WorkspaceSettings
from orchestrator.errors import WorkspaceError
from orchestrator.graph.graph import TargetGraph, build_graph
from orchestrator.workspace import loadcache
from orchestrator.workspace.buildfile.budget import Budget
from orchestrator.workspace.buildfile.loader import load_packages, load_settings
from orchestrator.workspace.lockfile import Lock, read_lock
from orchestrator.workspace.root import WORKSPACE_FILES, Workspace, find_packages, find_root, workspace_file


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedWorkspace:
    workspace: Workspace
    packages: tuple[LoadedPackage, ...]
    graph: TargetGraph
    lock: Lock | None = None  # images.lock, read on every load (it is small and keys depend on it)

    @property
    def root(self) -> Path:
        return self.workspace.root


def load(
    start: Path, *, explicit_root: Path | None = None, use_cache: bool = False, cache_dir: str | None = None
) -> LoadedWorkspace:
    """Find the workspace and load it; with ``use_cache``, reuse the last load when nothing changed."""
    if explicit_root is None:
        root = find_root(start)
    else:
        root = explicit_root.resolve()
        if not any((root / name).is_file() for name in WORKSPACE_FILES):
            raise WorkspaceError(f"--workspace {explicit_root}: no WORKSPACE file in {root}")
    started = time.time_ns()  # before anything is read: a change during loading makes the record racy
    settings = load_settings(root)
    workspace = Workspace(root=root, settings=settings)
    lock = read_lock(root)
    if not use_cache:
        packages, graph = _load_fresh(root, settings, None)
        return LoadedWorkspace(workspace=workspace, packages=packages, graph=graph, lock=lock)
    with Store(workspace.cache_dir(cache_dir)) as store:
        restored = loadcache.restore(store, str(root))
        if restored is not None:
            return LoadedWorkspace(workspace=workspace, packages=restored[0], graph=restored[1], lock=lock)
        witness = Witness(str(root))
        found = workspace_file(root)
        witness.saw(str(found))
        witness.saw(os.path.realpath(found))  # a symlinked WORKSPACE: its target (checked to be inside)
        packages, graph = _load_fresh(root, settings, witness)
        loadcache.save(store, str(root), witness, started, packages, graph)
    return LoadedWorkspace(workspace=workspace, packages=packages, graph=graph, lock=lock)


def _load_fresh(
    root: Path, settings: WorkspaceSettings, witness: Witness | None
) -> tuple[tuple[LoadedPackage, ...], TargetGraph]:
    limits = Budget(timeout_s=settings.eval_timeout_s, memory_mb=settings.eval_memory_mb)
    packages = tuple(load_packages(root, find_packages(root, witness), witness, limits=limits))
    targets = [t for p in packages for t in p.targets]
    return packages, build_graph(root, targets, settings, witness)
