"""Files changed since a git revision: committed, staged, unstaged and untracked."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestrator.errors import GitError


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GitError("--since needs git, which is not installed") from None
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def changed_files(root: Path, since: str) -> list[str]:
    """Workspace-relative paths that differ between ``since`` and the working tree."""
    top = Path(_git(root, "rev-parse", "--show-toplevel").strip()).resolve()
    _git(root, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}")
    changed = _git(root, "diff", "--name-only", "--no-renames", "-z", since, "--").split("\0")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z").split("\0")
    # ls-files prints paths relative to the current directory (root); diff relative to the top.
    paths = {str(top / p) for p in changed if p} | {str(root / p) for p in untracked if p}
    result = []
    for path in paths:
        rel = os.path.relpath(path, root)
        if not rel.startswith(".."):
            result.append(Path(rel).as_posix())
    return sorted(result)


def file_at(root: Path, since: str, path: str) -> str | None:
    """The text of workspace-relative ``path`` at revision ``since``, None when it did not exist."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "show", f"{since}:./{path}"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise GitError("--since needs git, which is not installed") from None
    return done.stdout if done.returncode == 0 else None
