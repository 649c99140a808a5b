"""``--since REF``: what changed in git since a revision, mapped to targets (examples and images.lock)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from orchestrator.workspace.lockfile import Lock, Pin, write_lock
from tests.workspaces import ScratchWorkspace

ROOT = Path(__file__).resolve().parents[2]


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
    )


def commit_all(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def examples_repository(tmp_path: Path) -> ScratchWorkspace:
    """The example family in a git repository of its own, one commit."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "BUILD.examples", root)
    git(root, "init", "-q")
    commit_all(root, "the family")
    return ScratchWorkspace(root=root, cache_dir=tmp_path / "cache")


PYTHON_CHAIN = ["//apps/python-app:python-app", "//base/company-python-base:company-python-base"]


def test_a_commit_touching_only_company_python_base(tmp_path: Path) -> None:
    ws = examples_repository(tmp_path)
    conf = ws.path("base/company-python-base/pip.conf")
    conf.write_text(conf.read_text() + "timeout = 30\n")
    commit_all(ws.root, "pip: longer timeout")
    assert ws.lines("query", "affected", "--since", "HEAD~1") == PYTHON_CHAIN
    plan = ws.lines("build", "--since", "HEAD~1", "--dry-run")
    planned = {line.split()[1] for line in plan if line.startswith(("BUILD", "CACHED"))}
    # the selection is exactly the changed target and its descendants, with what they rest on
    assert planned == {
        *PYTHON_CHAIN,
        "//base/company-base:company-base",
        "//rootfs:debian-bookworm",
    }


def test_the_dockerfile_build_file_and_star_files_count(tmp_path: Path) -> None:
    ws = examples_repository(tmp_path)
    dockerfile = ws.path("apps/static-hello/Dockerfile")
    dockerfile.write_text(dockerfile.read_text() + "# a comment\n")  # unstaged
    assert ws.lines("query", "affected", "--since", "HEAD") == [
        "//apps/static-hello:static-hello",
        "//hardened/secure-hello:secure-hello",
    ]
    git(ws.root, "checkout", "-q", "--", ".")
    defs = ws.path("tools/defs.star")
    defs.write_text(defs.read_text() + "\n# shared\n")
    git(ws.root, "add", "tools/defs.star")  # staged
    affected = ws.lines("query", "affected", "--since", "HEAD")
    assert "//rootfs:debian-bookworm" not in affected  # its BUILD file loads no .star file
    assert "//base/company-base:company-base" in affected and "//apps/node-app:node-app" in affected


def test_an_images_lock_change_affects_the_users_of_the_moved_pin(family: ScratchWorkspace) -> None:
    digest = "sha256:" + "1" * 64
    write_lock(
        family.root,
        Lock(
            {
                "alpine:3.19": {"linux/amd64": Pin(digest=digest, source="engine")},
                "gcc:13": {"linux/amd64": Pin(digest=digest, source="engine")},
            }
        ),
    )
    git(family.root, "init", "-q")
    commit_all(family.root, "locked")
    write_lock(
        family.root,
        Lock(
            {
                "alpine:3.19": {"linux/amd64": Pin(digest=digest, source="engine")},
                "gcc:13": {"linux/amd64": Pin(digest="sha256:" + "2" * 64, source="engine")},
            }
        ),
    )
    assert family.lines("query", "affected", "--since", "HEAD") == ["//apps/static:static", "//hardened:secure"]
    # without the old lock to compare with, every user of a pinned base counts
    assert family.lines("query", "affected", "--files", "images.lock") == [
        "//apps/static:static",
        "//apps/web:web",
        "//hardened:secure",
    ]


def test_tests_of_affected_images_and_of_changed_build_files(tmp_path: Path) -> None:
    from orchestrator.imagetest.runner import select_tests, tests_changed_since
    from orchestrator.workspace.loading import load

    ws = examples_repository(tmp_path)
    conf = ws.path("base/company-python-base/pip.conf")
    conf.write_text(conf.read_text() + "timeout = 30\n")
    loaded = load(ws.root)
    chosen = tests_changed_since(loaded, select_tests(loaded, []), "HEAD")
    assert [str(t.label) for t in chosen] == [
        "//apps/python-app:python-app-test",
        "//base/company-python-base:company-python-base-test",
    ]
    git(ws.root, "checkout", "-q", "--", ".")
    build = ws.path("apps/node-app/BUILD")
    build.write_text(build.read_text().replace('"hello"', '"hello from"'))  # only the test changed
    loaded = load(ws.root)
    chosen = tests_changed_since(loaded, select_tests(loaded, []), "HEAD")
    assert [str(t.label) for t in chosen] == ["//apps/node-app:node-app-test"]
