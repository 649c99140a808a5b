"""Resolving paths inside the workspace: symlinks followed, escapes refused."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from orchestrator.errors import WorkspaceError


@functools.lru_cache(maxsize=65536)
def real_dir(directory: str) -> str:
    """``os.path.realpath`` of a directory, from its parent's (memoised) and one lstat of its own.

    Resolving every component of every path again, as ``Path.resolve`` does, dominated loading a
    family of 1,000 images; directories are resolved once per process instead.
    """
    parent, name = os.path.split(directory)
    if not name or parent == directory:
        return os.path.realpath(directory)
    candidate = os.path.join(real_dir(parent), name)
    return os.path.realpath(candidate) if os.path.islink(candidate) else candidate


def real_path(path: str) -> str:
    """``os.path.realpath`` of an absolute, normalised path (memoised per directory)."""
    head, tail = os.path.split(path)
    real = os.path.join(real_dir(head), tail) if tail else real_dir(head)
    return os.path.realpath(real) if tail and os.path.islink(real) else real


def check_inside(path: Path, workspace_root: Path, *, what: str) -> Path:
    """``path`` resolved (symlinks followed); WorkspaceError if that is outside the workspace."""
    resolved = real_path(os.path.normpath(os.path.abspath(path)))
    root = real_dir(os.path.normpath(os.path.abspath(workspace_root)))
    if resolved != root and not resolved.startswith(root + os.sep):
        raise WorkspaceError(f"{what} {path} resolves outside the workspace {root}")
    return Path(resolved)
