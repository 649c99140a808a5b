"""The local cache on a real, small file system that fills up: one ERROR line, exit 2, and a store
that still opens and reads once space is freed.

A tmpfs of 2 MiB is mounted as the cache directory, which needs root (CAP_SYS_ADMIN). Without it
the tests are skipped, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cache import store as store_module
from orchestrator.cache.store import Store
from orchestrator.errors import CacheFullError
from tests.invariants import violations
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted at a fresh directory."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs (needs root): {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write zeros into ``directory/name`` until the file system has not one byte left."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    chunk = 65536
    try:
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError:
                chunk //= 2
    finally:
        os.close(fd)
    return path


@pytest.fixture
def warnings_seen() -> Iterator[list[str]]:
    seen: list[str] = []
    previous = store_module.set_warning_handler(seen.append)
    yield seen
    store_module.set_warning_handler(previous)


def _single_error_line(output: str, stderr: str) -> str:
    assert "Traceback" not in output
    (line,) = stderr.splitlines()
    assert line.startswith("ERROR ")
    return line


@pytest.mark.parametrize("when", ["cold", "warm"])
def test_full_disk_is_one_error_line_naming_the_path_and_the_fix(
    family: ScratchWorkspace, small_disk: Path, when: str
) -> None:
    family.cache_dir = small_disk / "cache"
    if when == "warm":
        assert family.run("hash").exit_code == 0
    fill(small_disk)
    result = family.run("hash")
    assert result.exit_code == 2
    line = _single_error_line(result.output, result.stderr)
    assert str(family.cache_dir / "store") in line
    assert "no space left" in line
    assert "free space" in line
    assert "--cache-dir" in line


def test_disk_filling_up_under_writes_is_a_cache_full_error_and_the_store_reads_once_space_is_freed(
    small_disk: Path, warnings_seen: list[str]
) -> None:
    reserve = small_disk / "reserve"
    reserve.write_bytes(b"\0" * 512 * 1024)
    cache_dir = small_disk / "cache"
    value: Callable[[int], object] = lambda i: {"i": i, "pad": ("x" * 300) if i % 5 else ("y" * 40000)}  # noqa: E731
    written = 0
    with pytest.raises(CacheFullError) as caught, Store(cache_dir) as s:
        for i in range(100_000):
            s.set(f"k{i}", value(i))
            written = i + 1
    assert caught.value.path == str(cache_dir / "store")
    assert written > 10
    reserve.unlink()
    with Store(cache_dir) as s:
        assert [s.get(f"k{i}") for i in range(written)] == [value(i) for i in range(written)]
        s.set("after", 1)
    assert warnings_seen == []
    assert not list(cache_dir.glob("store.damaged-*"))


@pytest.fixture
def engine_family(workspace: ScratchWorkspace, busybox_image: str) -> Iterator[tuple[ScratchWorkspace, str]]:
    """Two images on the real engine (base -> app) in unique repositories; removed afterwards."""
    import docker

    prefix = f"cf-{uuid.uuid4().hex[:8]}"
    workspace.write(
        {
            "WORKSPACE": "",
            "base/BUILD": f'image(name = "base", repository = "{prefix}-base")\n',
            "base/Dockerfile": f"FROM {busybox_image}\nCOPY motd /etc/motd\n",
            "base/motd": "hello\n",
            "app/BUILD": f'image(name = "app", repository = "{prefix}-app")\n',
            "app/Dockerfile": f"FROM {prefix}-base:latest\nRUN cat /etc/motd > /app.txt\n",
        }
    )
    yield workspace, prefix
    client = docker.APIClient()
    for image in client.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix):
                client.remove_image(tag, force=True)


def _build(ws: ScratchWorkspace) -> tuple[int, str, dict[str, str]]:
    """``orchestrator build`` in a process of its own, as a user runs it: every connection to the
    cache is closed when it ends (in-process, a connection left open would checkpoint its WAL over
    the damage a test writes)."""
    report = ws.root.parent / f"report-{uuid.uuid4().hex[:6]}.json"
    command = [str(Path(sys.executable).parent / "orchestrator"), "--workspace", str(ws.root)]
    command += ["--cache-dir", str(ws.cache_dir), "build", "--report", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert "Traceback" not in result.stdout + result.stderr
    data = json.loads(report.read_text()) if report.exists() else {"nodes": []}
    return result.returncode, result.stderr, {node["label"]: node["status"] for node in data["nodes"]}


def test_build_on_a_damaged_cache_warns_once_and_finds_its_images_again(
    engine_family: tuple[ScratchWorkspace, str], docker_api: Any
) -> None:
    ws, _ = engine_family
    code, _, statuses = _build(ws)
    assert code == 0
    assert set(statuses.values()) == {"built"}
    with (ws.cache_dir / "store" / "cache.db").open("r+b") as db:
        db.write(b"\xde\xad\xbe\xef" * 1024)
    code, stderr, statuses = _build(ws)
    assert code == 0, stderr
    assert stderr.count("WARNING ") == 1
    (warning,) = [line for line in stderr.splitlines() if line.startswith("WARNING ")]
    assert "file is not a database" in warning
    assert str(ws.cache_dir / "store.damaged-") in warning
    # the records went with the damaged store; the content-tagged images carry their keys' labels
    assert statuses == {"//base:base": "cached", "//app:app": "cached"}
    code, stderr, statuses = _build(ws)
    assert (code, stderr.count("WARNING ")) == (0, 0)
    assert set(statuses.values()) == {"cached"}
    assert violations(ws.cache_dir, docker_api) == []
