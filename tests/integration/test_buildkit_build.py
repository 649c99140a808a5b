"""``orchestrator build`` with BuildKit, end to end: cache mounts, secrets, and a canary that is nowhere.

The secret's value is a random canary. After the build it must not appear in anything the
orchestrator or the engine kept: the command's output, the report, every file of the cache
directory (records, manifests, logs), the image's layers (``docker save``), its history and its
config.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import TEST_LABEL, remove_prefixed
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(docker_engine: Any, docker_api: Any) -> Iterator[str]:
    """A unique repository prefix; its tags and labelled images are removed afterwards."""
    prefix = f"ot-bk-{uuid.uuid4().hex[:8]}"
    yield prefix
    remove_prefixed(docker_api, prefix)


def _family(prefix: str, busybox: str) -> dict[str, str]:
    labels = f'labels = {{"{TEST_LABEL}": "{prefix}"}}'
    return {
        "WORKSPACE": 'workspace(executor = "buildkit")\n',
        "cached/BUILD": f'image(name = "cached", repository = "{prefix}-cached", {labels})\n',
        "cached/Dockerfile": (
            f"FROM {busybox}\n"
            "ARG ROUND=1\n"
            # What the previous build left in the cache mount, then this build's own mark.
            "RUN --mount=type=cache,target=/cache sh -c 'ls /cache > /seen; echo $ROUND > /cache/round-$ROUND'\n"
        ),
        "secret/BUILD": (
            f'image(name = "secret", repository = "{prefix}-secret", {labels},\n'
            '      secrets = {"token": "env:ORCH_TEST_TOKEN", "cert": "file:cert.pem"})\n'
        ),
        "secret/Dockerfile": (
            f"FROM {busybox}\n"
            "RUN --mount=type=secret,id=token --mount=type=secret,id=cert "
            'sh -c \'test -s /run/secrets/token && test "$(cat /run/secrets/cert)" = "$(cat /run/secrets/token)" '
            "&& wc -c < /run/secrets/token > /token-length'\n"
        ),
    }


def _bytes_of_image(docker_api: Any, reference: str) -> bytes:
    """Every byte the engine keeps of an image: its saved tar with each layer unpacked, history, config."""
    saved = b"".join(docker_api.get_image(reference))
    parts = [saved]
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer:
            if member.name.endswith("layer.tar"):
                layer = outer.extractfile(member)
                assert layer is not None
                data = layer.read()
                with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                    for file in inner:
                        if file.isfile():
                            content = inner.extractfile(file)
                            assert content is not None
                            parts.append(content.read())
    parts.append(json.dumps(docker_api.history(reference)).encode())
    parts.append(json.dumps(docker_api.inspect_image(reference)).encode())
    return b"\n".join(parts)


def _files_under(directory: Path) -> Iterator[Path]:
    return (p for p in directory.rglob("*") if p.is_file())


def test_secrets_build_and_the_canary_is_nowhere(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str, docker_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("ORCH_TEST_TOKEN", canary)
    workspace.write(_family(prefix, busybox_image))
    workspace.write({"secret/cert.pem": canary})
    report = workspace.root.parent / "report.json"
    result = workspace.run("-v", "build", "//secret", "--report", str(report))
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["executor"]["used"] == "buildkit"
    assert [n["executor"] for n in data["nodes"]] == ["buildkit"]

    image = f"{prefix}-secret:latest"
    run = docker_api.create_container(image, ["cat", "/token-length"])
    try:
        docker_api.start(run)
        docker_api.wait(run)
        assert docker_api.logs(run).decode().strip() == str(len(canary))  # the RUN saw the secret
    finally:
        docker_api.remove_container(run, force=True)

    secret = canary.encode()
    assert secret not in result.output.encode()
    assert secret not in report.read_bytes()
    leaks = [str(p) for p in _files_under(workspace.cache_dir) if secret in p.read_bytes()]
    assert leaks == []  # records, manifests, logs, the stat cache
    assert secret not in _bytes_of_image(docker_api, image)
    assert secret not in workspace.run("explain", "//secret", "-o", "json").stdout.encode()


def test_a_cache_mount_keeps_what_the_previous_build_wrote(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str, docker_api: Any
) -> None:
    workspace.write(_family(prefix, busybox_image))
    assert workspace.run("build", "//cached").exit_code == 0
    workspace.write(
        {"cached/BUILD": workspace.path("cached/BUILD").read_text().replace(")\n", ', build_args = {"ROUND": "2"})\n')}
    )
    result = workspace.run("build", "//cached")
    assert result.exit_code == 0, result.output
    run = docker_api.create_container(f"{prefix}-cached:latest", ["cat", "/seen"])
    try:
        docker_api.start(run)
        docker_api.wait(run)
        seen = docker_api.logs(run).decode().split()
    finally:
        docker_api.remove_container(run, force=True)
    assert "round-1" in seen  # the second build's RUN found the first one's file in the cache mount


def test_secrets_under_the_classic_builder_are_refused_before_anything_is_built(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_TEST_TOKEN", "x")
    workspace.write(_family(prefix, busybox_image))
    workspace.write({"secret/cert.pem": "x"})
    result = workspace.run("build", "//secret", "--executor", "classic")
    assert result.exit_code == 2, result.output
    assert "BuildKit" in result.output and "//secret:secret" in result.output
