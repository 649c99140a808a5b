"""Content keys: what changes them and what must not."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchestrator.keys import parallel as parallel_inputs
from tests.workspaces import ScratchWorkspace

BASE_AND_DESCENDANTS = {
    "//base:company-base",
    "//lang/node:company-node-base",
    "//lang/python:company-python-base",
    "//apps/web:web",
    "//apps/api:api",
}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {node.split()[0] for node in before if before[node] != after[node]}


def test_hash_prints_label_platform_key_per_node(family: ScratchWorkspace) -> None:
    lines = family.lines("hash", "//apps/...")
    assert [line.split()[:2] for line in lines] == [
        ["//apps/api:api", "linux/amd64"],
        ["//apps/static:static", "linux/amd64"],
        ["//apps/web:web", "linux/amd64"],
    ]
    assert all(len(line.split()[2]) == 32 for line in lines)  # 128-bit hex


def test_keys_equal_across_copies_at_different_paths(family: ScratchWorkspace, tmp_path: Path) -> None:
    copy = ScratchWorkspace(root=tmp_path / "elsewhere" / "copy", cache_dir=tmp_path / "other-cache")
    shutil.copytree(family.root, copy.root, symlinks=True)
    assert family.keys() == copy.keys()


def test_keys_survive_touching_every_file(family: ScratchWorkspace) -> None:
    before = family.keys()
    for dirpath, _, files in os.walk(family.root):
        for name in files:
            os.utime(Path(dirpath) / name, ns=(1_000_000_000, 1_000_000_000))
    assert family.keys() == before


def test_one_byte_in_a_leaf_changes_only_that_leaf(family: ScratchWorkspace) -> None:
    before = family.keys()
    family.write({"apps/web/src/index.js": "console.log('hj')\n"})
    assert changed(before, family.keys()) == {"//apps/web:web"}


def test_one_byte_in_a_base_changes_the_base_and_exactly_its_descendants(family: ScratchWorkspace) -> None:
    before = family.keys()
    family.write({"base/motd": "welcomf\n"})
    assert changed(before, family.keys()) == BASE_AND_DESCENDANTS


def test_rootfs_tarball_change_reaches_everything_built_on_it(family: ScratchWorkspace) -> None:
    before = family.keys()
    family.write({"rootfs/debian.tar": "not really a tarbalL\n"})
    assert changed(before, family.keys()) == BASE_AND_DESCENDANTS | {"//rootfs:debian"}


def test_file_excluded_by_dockerignore_changes_no_key(family: ScratchWorkspace) -> None:
    before = family.keys()
    family.write({"apps/web/debug.log": "other noise\n", "apps/web/secrets/key": "x\n"})
    assert family.keys() == before


def test_undeclared_file_next_to_srcs_changes_no_key(family: ScratchWorkspace) -> None:
    before = family.keys()
    family.write({"apps/api/notes.txt": "still not an input\n"})
    assert family.keys() == before


def test_exec_bit_change_changes_the_key(family: ScratchWorkspace) -> None:
    before = family.keys()
    family.path("lang/node/.npmrc").chmod(0o755)
    assert changed(before, family.keys()) == {"//lang/node:company-node-base", "//apps/web:web"}


def test_same_size_edit_with_restored_mtime_changes_the_key(family: ScratchWorkspace) -> None:
    path = family.path("apps/static/main.c")
    stat = path.stat()
    old_time = stat.st_mtime_ns - 10_000_000_000
    os.utime(path, ns=(old_time, old_time))
    before = family.keys()  # the stat cache now trusts main.c (its mtime is old)
    path.write_text(path.read_text().replace("0", "1"))
    os.utime(path, ns=(old_time, old_time))
    assert path.stat().st_size == stat.st_size
    assert changed(before, family.keys()) == {"//apps/static:static", "//hardened:secure"}


def test_edit_within_the_same_mtime_tick_is_caught(family: ScratchWorkspace) -> None:
    """Racy entry: written, hashed and rewritten inside one timestamp tick; ctime kept too."""
    path = family.path("apps/static/main.c")
    before = family.keys()
    st = path.stat()
    with open(path, "r+b") as handle:  # same inode, same size
        handle.write(b"X")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = family.keys()
    assert changed(before, after) == {"//apps/static:static", "//hardened:secure"}


def test_build_arg_target_and_platform_enter_the_key(family: ScratchWorkspace) -> None:
    before = family.keys()
    family.write({"apps/static/BUILD": 'image(name = "static", build_args = {"X": "1"})\n'})
    assert changed(before, family.keys()) == {"//apps/static:static", "//hardened:secure"}


def test_symlink_is_keyed_by_its_target_text(family: ScratchWorkspace) -> None:
    family.write({"base/Dockerfile": "FROM debian:bookworm\nCOPY motd link /etc/\n"})
    link = family.path("base/link")
    link.symlink_to("motd")
    before = family.keys()
    link.unlink()
    link.symlink_to("/etc/hostname")
    assert "//base:company-base" in changed(before, family.keys())


def test_sha256_key_digest(family: ScratchWorkspace) -> None:
    family.write({"WORKSPACE": 'workspace(platforms = ["linux/amd64"], key_digest = "sha256")\n'})
    assert all(len(key) == 64 for key in family.keys().values())


def test_two_platforms_give_two_nodes_with_different_keys(family: ScratchWorkspace) -> None:
    family.write({"WORKSPACE": 'workspace(platforms = ["linux/amd64", "linux/arm64"])\n'})
    keys = family.keys("//base:company-base")
    assert sorted(keys) == ["//base:company-base linux/amd64", "//base:company-base linux/arm64"]
    assert len(set(keys.values())) == 2


def test_keys_hashed_in_worker_processes_equal_keys_hashed_here(
    family: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequential = family.keys()
    family.write({"apps/web/src/index.js": "console.log('parallel')\n"})
    sequential_changed = ScratchWorkspace(root=family.root, cache_dir=family.cache_dir.with_name("seq")).keys()
    monkeypatch.setattr(parallel_inputs, "MIN_TARGETS", 1)
    parallel = ScratchWorkspace(root=family.root, cache_dir=family.cache_dir.with_name("par")).keys()
    assert parallel == sequential_changed
    assert parallel != sequential
    again = ScratchWorkspace(root=family.root, cache_dir=family.cache_dir.with_name("par")).keys()
    assert again == parallel  # and the workers' stat records are usable afterwards
