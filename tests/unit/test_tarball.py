"""The context tar: deterministic bytes, normalised headers, the rebound Dockerfile, changed inputs."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from orchestrator.engine.api import ExtraFile
from orchestrator.engine.tarball import InputChanged, context_tar_stream, write_context_tar
from orchestrator.errors import EXIT_BUILD_FAILED
from orchestrator.keys.context import ContextEntry, context_entries

REBOUND = "FROM registry.local/base:key-0123456789abcdef\nCOPY . /app\n"


def _write(root: Path, rel: str, text: str = "x", mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _context(root: Path, *, reverse: bool = False, mtime: int = 1_700_000_000) -> tuple[ContextEntry, ...]:
    """A context with a Dockerfile, a plain file, an executable, a nested file and a symlink."""
    files = [
        ("Dockerfile", "FROM debian:bookworm\n", 0o644),
        ("app/main.py", "print('hi')\n", 0o600),
        ("app/run.sh", "#!/bin/sh\nexec python3 main.py\n", 0o700),
        ("app-data/conf/settings.ini", "[a]\nb = 1\n", 0o664),
    ]
    for rel, text, mode in reversed(files) if reverse else files:
        _write(root, rel, text, mode)
    (root / "app/current").symlink_to("main.py")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)
    return context_entries(root, Path("Dockerfile"), workspace_root=root)


def _tar(entries: tuple[ContextEntry, ...], extra_files: tuple[ExtraFile, ...] = ()) -> bytes:
    out = io.BytesIO()
    write_context_tar(out, entries, dockerfile_path="Dockerfile", dockerfile_text=REBOUND, extra_files=extra_files)
    return out.getvalue()


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def _read(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def test_two_writes_are_byte_identical(tmp_path: Path) -> None:
    entries = _context(tmp_path)
    assert _tar(entries) == _tar(entries)


def test_creation_order_mtimes_and_group_bits_do_not_change_the_bytes(tmp_path: Path) -> None:
    first = _context(tmp_path / "one")
    _context(tmp_path / "two", reverse=True, mtime=1_000)
    (tmp_path / "two/app/main.py").chmod(0o644)  # other permission bits than 0o600; still not executable
    second = context_entries(tmp_path / "two", Path("Dockerfile"), workspace_root=tmp_path / "two")
    assert _tar(first) == _tar(second)


def test_entry_order_given_does_not_matter(tmp_path: Path) -> None:
    entries = _context(tmp_path)
    assert _tar(tuple(reversed(entries))) == _tar(entries)


def test_headers_are_normalised(tmp_path: Path) -> None:
    members = _members(_tar(_context(tmp_path)))
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, 0, "", "")}
    assert members["app/main.py"].mode == 0o644
    assert members["app/run.sh"].mode == 0o755
    assert members["app"].isdir()
    assert members["app"].mode == 0o755


def test_symlink_is_sent_as_a_link(tmp_path: Path) -> None:
    link = _members(_tar(_context(tmp_path)))["app/current"]
    assert link.issym()
    assert link.linkname == "main.py"
    assert link.mode == 0o777


def test_directories_precede_their_contents(tmp_path: Path) -> None:
    names = list(_members(_tar(_context(tmp_path))))
    assert names.index("app") < names.index("app/main.py") < names.index("app-data")


def test_file_contents_are_streamed_from_disk(tmp_path: Path) -> None:
    data = _tar(_context(tmp_path))
    assert _read(data, "app/run.sh") == b"#!/bin/sh\nexec python3 main.py\n"


def test_users_dockerfile_is_replaced_by_the_rebound_text(tmp_path: Path) -> None:
    data = _tar(_context(tmp_path))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert [m.name for m in tar.getmembers()].count("Dockerfile") == 1
    assert _read(data, "Dockerfile") == REBOUND.encode()
    assert (tmp_path / "Dockerfile").read_text() == "FROM debian:bookworm\n"  # never modified


def test_the_sent_dockerfile_and_the_ignore_file_hide_themselves_from_the_build(tmp_path: Path) -> None:
    """The engine removes both when .dockerignore names them: COPY . never copies the rebound text."""
    entries = _context(tmp_path)
    out = io.BytesIO()
    write_context_tar(out, entries, dockerfile_path=".orchestrator.Dockerfile", dockerfile_text=REBOUND)
    data = out.getvalue()
    assert _read(data, ".orchestrator.Dockerfile") == REBOUND.encode()
    assert _read(data, ".dockerignore") == b".dockerignore\n.orchestrator.Dockerfile\n"
    assert _read(data, "Dockerfile") == b"FROM debian:bookworm\n"  # the user's, unchanged


def test_dockerfile_outside_the_entries_is_added_with_its_directory(tmp_path: Path) -> None:
    out = io.BytesIO()
    write_context_tar(out, (), dockerfile_path="./docker/app.Dockerfile", dockerfile_text=REBOUND)
    members = _members(out.getvalue())
    assert list(members) == [".dockerignore", "docker", "docker/app.Dockerfile"]
    assert members["docker"].isdir()
    assert members["docker/app.Dockerfile"].mode == 0o644


def test_extra_files_are_added_with_missing_parents(tmp_path: Path) -> None:
    entries = _context(tmp_path / "ctx")
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(b"\0" * 2048)
    data = _tar(entries, extra_files=(ExtraFile(path="gen/layers/rootfs.tar", source=str(rootfs)),))
    members = _members(data)
    assert members["gen"].isdir()
    assert members["gen/layers"].isdir()
    assert members["gen/layers/rootfs.tar"].mode == 0o644
    assert _read(data, "gen/layers/rootfs.tar") == b"\0" * 2048


def test_a_path_leaving_the_context_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="inside the build context"):
        write_context_tar(io.BytesIO(), (), dockerfile_path="../Dockerfile", dockerfile_text=REBOUND)


def test_file_whose_size_changed_raises_input_changed(tmp_path: Path) -> None:
    entries = _context(tmp_path)
    (tmp_path / "app/main.py").write_text("print('hello, world')\n")
    with pytest.raises(InputChanged, match=r"app/main\.py changed during the build \(its size went from 12 to 22"):
        _tar(entries)
    assert InputChanged.exit_code == EXIT_BUILD_FAILED


def test_file_that_vanished_or_became_a_link_raises_input_changed(tmp_path: Path) -> None:
    entries = _context(tmp_path)
    (tmp_path / "app/main.py").unlink()
    with pytest.raises(InputChanged, match=r"app/main\.py changed"):
        _tar(entries)
    (tmp_path / "app/main.py").symlink_to("run.sh")
    with pytest.raises(InputChanged, match=r"app/main\.py changed"):
        _tar(entries)


def test_context_tar_stream_is_a_rewound_file_with_the_same_bytes(tmp_path: Path) -> None:
    entries = _context(tmp_path)
    with context_tar_stream(entries, dockerfile_path="Dockerfile", dockerfile_text=REBOUND) as stream:
        assert stream.read() == _tar(entries)
