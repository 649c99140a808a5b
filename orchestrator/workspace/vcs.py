"""The git helpers: files changed since a revision (committed, staged, unstaged, untracked), and git's answers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestrator.errors import GitError


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git -C root args``, whatever its exit status; GitError when git is not installed."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GitError("--since needs git, which is not installed") from None


def git(root: Path, *args: str) -> str:
    """The output of a git command that must succeed; GitError when it fails."""
    done = _run(root, *args)
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def git_value(root: Path, *args: str) -> str | None:
    """The stripped output of a git command, None when git is missing, fails or prints nothing."""
    try:
        done = _run(root, *args)
    except GitError:
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def changed_files(root: Path, since: str) -> list[str]:
    """Workspace-relative paths that differ between ``since`` and the working tree."""
    top = Path(git(root, "rev-parse", "--show-toplevel").strip()).resolve()
    git(root, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}")
    changed = git(root, "diff", "--name-only", "--no-renames", "-z", since, "--").split("\0")
    untracked = git(root, "ls-files", "--others", "--exclude-standard", "-z").split("\0")
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
    done = _run(root, "show", f"{since}:./{path}")
    return done.stdout if done.returncode == 0 else None
