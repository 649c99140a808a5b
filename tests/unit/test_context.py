"""The build context file set: ignore files, forced files, symlinks, declared srcs, workspace checks."""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import WorkspaceError
from orchestrator.keys.context import (
    ContextEntry,
    EntryKind,
    check_inside,
    context_entries,
    declared_entries,
    dockerignore_path,
)


def _write(root: Path, rel: str, text: str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace whose context directory ``ctx`` holds a Dockerfile."""
    _write(tmp_path, "ctx/Dockerfile", "FROM scratch\n")
    return tmp_path


def _paths(ws: Path, dockerfile: str = "Dockerfile", context: str = "ctx") -> list[str]:
    return [e.path for e in context_entries(ws / context, Path(dockerfile), workspace_root=ws)]


def test_no_ignore_file_sends_everything_sorted(ws: Path) -> None:
    for rel in ["z.txt", "app/main.py", "app/lib/util.py", "a.txt"]:
        _write(ws / "ctx", rel)
    entries = context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws)
    assert [(e.path, e.kind) for e in entries] == [
        ("Dockerfile", EntryKind.FILE),
        ("a.txt", EntryKind.FILE),
        ("app", EntryKind.DIR),
        ("app/lib", EntryKind.DIR),
        ("app/lib/util.py", EntryKind.FILE),
        ("app/main.py", EntryKind.FILE),
        ("z.txt", EntryKind.FILE),
    ]
    main = entries[5]
    assert main.abs_path == str((ws / "ctx/app/main.py").resolve())
    st_main = os.lstat(main.abs_path)
    assert (main.size, main.mtime_ns, main.ctime_ns, main.inode) == (
        st_main.st_size,
        st_main.st_mtime_ns,
        st_main.st_ctime_ns,
        st_main.st_ino,
    )


def test_ignore_file_excludes_files_and_dirs(ws: Path) -> None:
    for rel in ["debug.log", "src/app.py", "src/app.log", "build/out.o", "build/sub/x.o"]:
        _write(ws / "ctx", rel)
    _write(ws / "ctx", ".dockerignore", "# build output\n*.log\nbuild\n")
    assert _paths(ws) == [".dockerignore", "Dockerfile", "src", "src/app.log", "src/app.py"]


def test_exception_reincludes_a_file_under_an_excluded_dir(ws: Path) -> None:
    for rel in ["build/keep.txt", "build/other.txt", "build/sub/deep.txt"]:
        _write(ws / "ctx", rel)
    _write(ws / "ctx", ".dockerignore", "build\n!build/keep.txt\n")
    # The excluded directory is sent as the parent of what it holds, not with its other contents.
    assert _paths(ws) == [".dockerignore", "Dockerfile", "build", "build/keep.txt"]


def test_wildcard_exception_reaches_deep_into_an_excluded_dir(ws: Path) -> None:
    for rel in ["node_modules/a/package.json", "node_modules/a/index.js", "node_modules/b/index.js"]:
        _write(ws / "ctx", rel)
    _write(ws / "ctx", ".dockerignore", "node_modules\n!**/package.json\n")
    assert _paths(ws) == [
        ".dockerignore",
        "Dockerfile",
        "node_modules",
        "node_modules/a",
        "node_modules/a/package.json",
    ]


def test_excluded_dir_with_nothing_reincluded_is_not_sent(ws: Path) -> None:
    _write(ws / "ctx", "build/other.txt")
    _write(ws / "ctx", ".dockerignore", "build\n!build/keep.txt\n")
    assert _paths(ws) == [".dockerignore", "Dockerfile"]


def test_dockerfile_and_ignore_file_are_always_sent(ws: Path) -> None:
    _write(ws / "ctx", "other.txt")
    _write(ws / "ctx", ".dockerignore", "*\n")
    assert _paths(ws) == [".dockerignore", "Dockerfile"]


def test_dockerfile_in_an_excluded_dir_is_sent_with_its_parents(ws: Path) -> None:
    _write(ws / "ctx", "docker/app/Dockerfile")
    _write(ws / "ctx", "docker/app/notes.txt")
    _write(ws / "ctx", ".dockerignore", "docker\n")
    assert _paths(ws, "docker/app/Dockerfile") == [
        ".dockerignore",
        "Dockerfile",
        "docker",
        "docker/app",
        "docker/app/Dockerfile",
    ]


def test_dockerfile_specific_ignore_file_wins(ws: Path) -> None:
    ctx = ws / "ctx"
    for rel in ["a.txt", "b.txt", "app.Dockerfile"]:
        _write(ctx, rel)
    _write(ctx, ".dockerignore", "a.txt\n")
    assert dockerignore_path(ctx, Path("Dockerfile")) == ctx / ".dockerignore"
    _write(ctx, "Dockerfile.dockerignore", "b.txt\n")
    _write(ctx, "app.Dockerfile.dockerignore", "*.txt\n")
    assert dockerignore_path(ctx, Path("Dockerfile")) == ctx / "Dockerfile.dockerignore"
    assert dockerignore_path(ctx, ctx / "app.Dockerfile") == ctx / "app.Dockerfile.dockerignore"
    assert "b.txt" not in _paths(ws)
    assert "a.txt" in _paths(ws)
    assert {"a.txt", "b.txt"}.isdisjoint(_paths(ws, "app.Dockerfile"))
    assert "app.Dockerfile.dockerignore" in _paths(ws, "app.Dockerfile")


def test_dockerfile_specific_ignore_file_lives_next_to_the_dockerfile(ws: Path) -> None:
    _write(ws, "docker/app.Dockerfile")  # outside the context, inside the workspace
    _write(ws, "docker/app.Dockerfile.dockerignore", "secret\n")
    _write(ws / "ctx", "secret")
    assert dockerignore_path(ws / "ctx", ws / "docker/app.Dockerfile") == ws / "docker/app.Dockerfile.dockerignore"
    assert _paths(ws, str(ws / "docker/app.Dockerfile")) == ["Dockerfile"]


def test_no_ignore_file(ws: Path) -> None:
    assert dockerignore_path(ws / "ctx", Path("Dockerfile")) is None


def test_symlinks_are_recorded_and_never_followed(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    ctx = ws / "ctx"
    _write(ctx, "real/file.txt")
    outside = _write(tmp_path_factory.mktemp("outside"), "secret.txt")
    (ctx / "to_file").symlink_to("real/file.txt")
    (ctx / "to_dir").symlink_to("real", target_is_directory=True)
    (ctx / "to_outside").symlink_to(outside)
    (ctx / "dangling").symlink_to("nowhere")
    entries = {e.path: e for e in context_entries(ctx, Path("Dockerfile"), workspace_root=ws)}
    assert sorted(entries) == ["Dockerfile", "dangling", "real", "real/file.txt", "to_dir", "to_file", "to_outside"]
    assert entries["to_dir"].kind is EntryKind.SYMLINK
    assert entries["to_dir"].link_target == "real"
    assert entries["to_file"].link_target == "real/file.txt"
    assert entries["to_outside"].link_target == str(outside)
    assert entries["dangling"].link_target == "nowhere"
    assert entries["real/file.txt"].link_target is None


def test_exec_bit_is_recorded(ws: Path) -> None:
    script = _write(ws / "ctx", "run.sh")
    script.chmod(0o755)
    (ws / "ctx/bin").mkdir()
    entries = {e.path: e for e in context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws)}
    assert entries["run.sh"].executable
    assert not entries["Dockerfile"].executable
    assert not entries["bin"].executable  # directories are never "executable"


@pytest.mark.parametrize("ignore", ["", "*.log\n"])
def test_fifos_are_skipped(ws: Path, ignore: str) -> None:
    os.mkfifo(ws / "ctx/pipe")
    if ignore:
        _write(ws / "ctx", ".dockerignore", ignore)
    assert "pipe" not in _paths(ws)
    with pytest.raises(WorkspaceError, match="is not a file, directory or symlink"):
        declared_entries(ws / "ctx", ["pipe"], Path("Dockerfile"), workspace_root=ws)


def test_unreadable_directory(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = ws / "ctx/locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if path.endswith("/locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(WorkspaceError, match=r"cannot read directory .*/locked: Permission denied"):
        context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws)


def test_empty_dir_is_an_entry(ws: Path) -> None:
    (ws / "ctx/empty/nested").mkdir(parents=True)
    assert _paths(ws) == ["Dockerfile", "empty", "empty/nested"]


def test_equality_ignores_stat_fields_but_not_mode(ws: Path) -> None:
    path = _write(ws / "ctx", "a.sh")
    before = context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws)
    os.utime(path, ns=(1, 1))
    assert context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws) == before
    path.chmod(0o755)
    assert context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws) != before


def test_entries_are_real_frozen_context_entries(ws: Path) -> None:
    (entry,) = context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws)
    assert type(entry) is ContextEntry
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.path = "other"  # type: ignore[misc]
    rebuilt = ContextEntry(**{f.name: getattr(entry, f.name) for f in dataclasses.fields(ContextEntry)})
    assert rebuilt == entry
    assert hash(rebuilt) == hash(entry)
    assert repr(rebuilt) == repr(entry)


def test_declared_srcs_are_exact(ws: Path) -> None:
    ctx = ws / "ctx"
    for rel in ["app/main.py", "app/other.py", "conf/a.ini", "conf/sub/b.ini", "unrelated.txt"]:
        _write(ctx, rel)
    _write(ctx, ".dockerignore", "conf\n")  # not applied
    entries = declared_entries(ctx, ["app/main.py", "conf", "conf/a.ini"], Path("Dockerfile"), workspace_root=ws)
    assert [e.path for e in entries] == [
        "Dockerfile",
        "app/main.py",
        "conf",
        "conf/a.ini",
        "conf/sub",
        "conf/sub/b.ini",
    ]


def test_declared_src_symlink_is_not_followed(ws: Path) -> None:
    _write(ws / "ctx", "real/x")
    (ws / "ctx/link").symlink_to("real", target_is_directory=True)
    entries = declared_entries(ws / "ctx", ["link"], Path("Dockerfile"), workspace_root=ws)
    assert [(e.path, e.kind) for e in entries] == [("Dockerfile", EntryKind.FILE), ("link", EntryKind.SYMLINK)]


def test_declared_dot_is_the_whole_context(ws: Path) -> None:
    _write(ws / "ctx", "a/b")
    entries = declared_entries(ws / "ctx", ["."], Path("Dockerfile"), workspace_root=ws)
    assert [e.path for e in entries] == ["Dockerfile", "a", "a/b"]


def test_declared_missing_src_is_named(ws: Path) -> None:
    with pytest.raises(WorkspaceError, match=r"src app/missing\.py does not exist"):
        declared_entries(ws / "ctx", ["app/missing.py"], Path("Dockerfile"), workspace_root=ws)


@pytest.mark.parametrize("src", ["../secret", "/etc/passwd", "a/../../secret", "linked/x"])
def test_declared_src_outside_the_context_is_rejected(ws: Path, src: str) -> None:
    _write(ws, "secret")
    (ws / "ctx/linked").symlink_to(ws, target_is_directory=True)
    with pytest.raises(WorkspaceError, match="resolves outside the context directory"):
        declared_entries(ws / "ctx", [src], Path("Dockerfile"), workspace_root=ws)


def test_context_outside_the_workspace_is_rejected(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    _write(tmp_path, "outside/Dockerfile")
    ws.mkdir()
    (ws / "ctx").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(WorkspaceError, match=r"context directory .*\.\./outside resolves outside the workspace"):
        context_entries(ws / "../outside", Path("Dockerfile"), workspace_root=ws)
    with pytest.raises(WorkspaceError, match=r"context directory .*ctx resolves outside the workspace"):
        context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws)
    with pytest.raises(WorkspaceError, match="resolves outside the workspace"):
        declared_entries(ws / "ctx", [], Path("Dockerfile"), workspace_root=ws)


def test_dockerfile_outside_the_workspace_is_rejected(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = _write(tmp_path_factory.mktemp("outside"), "Dockerfile")
    with pytest.raises(WorkspaceError, match=r"Dockerfile .* resolves outside the workspace"):
        context_entries(ws / "ctx", outside, workspace_root=ws)


def test_missing_context_dir(ws: Path) -> None:
    with pytest.raises(WorkspaceError, match=r"context directory .*nope does not exist"):
        context_entries(ws / "nope", Path("Dockerfile"), workspace_root=ws)


def test_check_inside_returns_the_resolved_path(ws: Path) -> None:
    (ws / "alias").symlink_to(ws / "ctx", target_is_directory=True)
    assert check_inside(ws / "alias", ws, what="context directory") == (ws / "ctx").resolve()
    with pytest.raises(WorkspaceError) as info:
        check_inside(ws / "..", ws, what="thing")
    assert str(info.value) == f"thing {ws / '..'} resolves outside the workspace {ws.resolve()}"


def test_order_does_not_depend_on_creation_order(tmp_path: Path) -> None:
    rels = ["b/2", "a/1", "a.txt", "a-b", "a/b/c", "B", "a0"]
    results = []
    for n, order in enumerate([rels, rels[::-1]]):
        ws = tmp_path / str(n)
        _write(ws, "ctx/Dockerfile")
        for rel in order:
            _write(ws / "ctx", rel)
        results.append(_paths(ws))
    assert results[0] == results[1] == sorted(results[0])


_NAMES = st.sampled_from(["a", "b", "a.b", "a-b", "B", "_", "é"])


@settings(max_examples=25, deadline=None)
@given(
    rels=st.lists(st.lists(_NAMES, min_size=1, max_size=3).map("/".join), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
    ignore=st.sampled_from(["", "a\n", "a\n!a/b\n", "**/b\n", "*\n!B\n"]),
)
def test_result_is_independent_of_creation_order(rels: list[str], seed: int, ignore: str) -> None:
    # A file and a directory cannot share a path: keep only paths with no other path below them.
    files = sorted({r for r in rels if not any(o.startswith(r + "/") for o in rels)})
    results = []
    for order in (files, random.Random(seed).sample(files, len(files))):
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp)
            _write(ws, "ctx/Dockerfile")
            if ignore:
                _write(ws, "ctx/.dockerignore", ignore)
            for rel in order:
                _write(ws / "ctx", rel)
            results.append(context_entries(ws / "ctx", Path("Dockerfile"), workspace_root=ws))
    assert results[0] == results[1]
    assert [e.path for e in results[0]] == sorted(e.path for e in results[0])
