"""Which targets a changed file belongs to (for ``query affected`` and ``build --since``).

Decided from each target's input *rules*, not from a walk, so a deleted file still counts: a file
belongs to a target when it is its BUILD file or a ``.star`` file that BUILD file loads, its
Dockerfile or ignore file, a file of its context that its Dockerfile reads and the ignore file does
not exclude (or one of its declared ``srcs``), or a rootfs tarball, script or source. WORKSPACE belongs to every target;
images.lock to the targets that use a base whose pin changed (every target using an external base
when the old lock is not known).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget, RootfsTarget, Target
from orchestrator.dockerfile import ContextReads
from orchestrator.keys.context import dockerignore_path
from orchestrator.keys.dockerignore import IgnoreMatcher, parse_dockerignore
from orchestrator.keys.selection import is_read
from orchestrator.keys.target_reads import target_reads
from orchestrator.workspace.loading import LoadedWorkspace
from orchestrator.workspace.lockfile import LOCK_FILE, changed_pins, parse_lock
from orchestrator.workspace.root import WORKSPACE_FILES

GLOBAL_FILES = frozenset(WORKSPACE_FILES)


def _under(path: str, directory: str) -> str | None:
    """``path`` relative to ``directory`` when inside it, else None ('' is the root)."""
    if not directory:
        return path
    if path.startswith(directory + "/"):
        return path[len(directory) + 1 :]
    return None


class _ImageInputs:
    def __init__(self, loaded: LoadedWorkspace, target: ImageTarget) -> None:
        root = loaded.root
        self.target = target
        ignore = dockerignore_path(root / target.context, root / target.dockerfile)
        self.ignore_file = Path(os.path.relpath(ignore, root)).as_posix() if ignore else None
        text = ignore.read_text(encoding="utf-8", errors="surrogateescape") if ignore else ""
        self.matcher = IgnoreMatcher(parse_dockerignore(text))
        self.reads: ContextReads | None = None
        if target.srcs is None:
            triggers = () if loaded.lock is None else loaded.lock.bases_with_triggers()
            self.reads = target_reads(root, loaded.graph, target, bases_with_triggers=triggers)

    def holds(self, path: str) -> bool:
        target = self.target
        if path in (target.dockerfile, self.ignore_file):
            return True
        rel = _under(path, target.context)
        if rel is None:
            return False
        if self.reads is None:  # srcs
            return any(rel == src or rel.startswith(src + "/") for src in target.srcs or ())
        return not self.matcher.is_excluded(rel) and is_read(rel, self.reads)


def _rootfs_holds(target: RootfsTarget, path: str) -> bool:
    return path in (target.tarball, target.script, *target.srcs)


def targets_owning(
    loaded: LoadedWorkspace, changed: Iterable[str], *, pins_changed: set[tuple[str, str]] | None = None
) -> set[Label]:
    """Targets with at least one of the ``changed`` workspace-relative paths among their inputs.

    ``pins_changed``: the (reference, platform) pins that differ in images.lock, when known.
    """
    paths = {Path(os.path.normpath(p)).as_posix() for p in changed}
    graph = loaded.graph
    if paths & GLOBAL_FILES:
        return set(graph.targets)
    hit: set[Label] = set()
    if LOCK_FILE in paths:
        for node, deps in graph.node_deps.items():
            if any(pins_changed is None or (ref, node.platform) in pins_changed for ref in deps.externals):
                hit.add(node.label)
    for package in loaded.packages:
        if package.build_file in paths or paths.intersection(package.loads):
            hit.update(t.label for t in package.targets)
    for label, target in graph.targets.items():
        if label not in hit and _holds_any(loaded, target, paths):
            hit.add(label)
    return hit


def _holds_any(loaded: LoadedWorkspace, target: Target, paths: set[str]) -> bool:
    if isinstance(target, RootfsTarget):
        return any(_rootfs_holds(target, p) for p in paths)
    inputs = _ImageInputs(loaded, target)
    return any(inputs.holds(p) for p in paths)


def targets_changed_since(loaded: LoadedWorkspace, since: str) -> set[Label]:
    """Targets whose inputs changed between git revision ``since`` and the working tree."""
    from orchestrator.workspace.vcs import changed_files, file_at

    changed = changed_files(loaded.root, since)
    pins = None
    if LOCK_FILE in changed:
        old_text = file_at(loaded.root, since, LOCK_FILE)
        pins = changed_pins(None if old_text is None else parse_lock(old_text), loaded.lock)
    return targets_owning(loaded, changed, pins_changed=pins)
