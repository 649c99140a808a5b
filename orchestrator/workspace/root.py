"""Finding the workspace root and holding its settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cache.witness import BUILD_NAMES, PACKAGES, Witness
from orchestrator.core.model import WorkspaceSettings
from orchestrator.errors import WorkspaceError

WORKSPACE_FILES = ("WORKSPACE", "WORKSPACE.bazel")
BUILD_FILES = BUILD_NAMES


@dataclass(frozen=True, slots=True, kw_only=True)
class Workspace:
    root: Path  # absolute, resolved
    settings: WorkspaceSettings

    def cache_dir(self, override: str | None = None) -> Path:
        """``--cache-dir``, else WORKSPACE's ``cache_dir``, else the user's cache directory."""
        if override:
            return Path(override).resolve()
        if self.settings.cache_dir:
            return (self.root / self.settings.cache_dir).resolve()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "orchestrator"


def find_root(start: Path) -> Path:
    """Walk up from ``start`` to the first directory holding a WORKSPACE file."""
    here = start.resolve()
    for directory in (here, *here.parents):
        if any((directory / name).is_file() for name in WORKSPACE_FILES):
            return directory
    raise WorkspaceError(
        f"no WORKSPACE file in {here} or any parent directory; "
        "create an empty WORKSPACE file at the root of your images, or pass --workspace DIR"
    )


def workspace_file(root: Path) -> Path:
    for name in WORKSPACE_FILES:
        if (root / name).is_file():
            return root / name
    raise WorkspaceError(f"{root} has no WORKSPACE file")


def find_packages(root: Path, witness: Witness | None = None) -> list[str]:
    """Workspace-relative package paths (directories with a BUILD file), sorted.

    Only names are looked at (no stat per file), and hidden directories are skipped. Every
    directory listed is recorded in ``witness``.
    """
    packages: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(root, rel) if rel else str(root)
        try:
            entries = list(os.scandir(path))
        except OSError:
            if witness is not None:
                witness.saw(rel or ".")
            continue
        if witness is not None:
            witness.listed(rel or ".", PACKAGES, entries)
        names = {e.name for e in entries}
        if any(b in names for b in BUILD_FILES) and any(e.name in BUILD_FILES and e.is_file() for e in entries):
            packages.append(rel)
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            stack.append(f"{rel}/{entry.name}" if rel else entry.name)
    packages.sort()
    return packages
