"""A registry cache that demands a password, on the real engine and a real registry (htpasswd).

Without credentials it answers 401: one ERROR line and a local build, or, when the registry is
required, a failed build. With a credential helper named in the Docker config (``credHelpers``),
the client and the engine both get the password from it, and a second machine finds the images.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.core.platforms import host_platform
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

USER, PASSWORD = "ci", "s3cret-pw"

# Answers ``get`` as docker-credential-* helpers do: the server on stdin, JSON on stdout.
HELPER = f"""#!/bin/sh
set -eu
[ "$1" = get ] || exit 1
server=$(cat)
printf '{{"ServerURL": "%s", "Username": "{USER}", "Secret": "{PASSWORD}"}}\\n' "$server"
"""


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[str]:
    """A real registry that answers 401 unless given ``USER``:``PASSWORD``: its address."""
    from tests.registry_server import registry_binary, running_registry

    if registry_binary() is None:
        message = "the registry tests need docker-registry (apt-get install docker-registry)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    with running_registry(tmp_path / "registry", users={USER: PASSWORD}) as address:
        yield address


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker config directory of the test's own (``DOCKER_CONFIG``): no credentials yet."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


@pytest.fixture
def app(workspace: ScratchWorkspace, busybox_image: str, docker_api: Any) -> Iterator[tuple[ScratchWorkspace, str]]:
    """One image on the busybox base, in a repository of its own; its images are removed afterwards."""
    repository = f"auth-{uuid.uuid4().hex[:10]}"
    workspace.write(
        {
            "WORKSPACE": f'workspace(platforms = ["{host_platform()}"])\n',
            "app/BUILD": f'image(name = "app", repository = "{repository}")\n',
            "app/Dockerfile": f"FROM {busybox_image}\nCOPY hello.txt /hello.txt\n",
            "app/hello.txt": f"{repository}\n",
        }
    )
    yield workspace, repository
    remove_images(docker_api, repository)


def remove_images(api: Any, repository: str) -> None:
    """Every image tagged in ``repository``, registry-named ones included (a new machine)."""
    for image in api.images():
        for tag in image.get("RepoTags") or []:
            if repository in tag:
                api.remove_image(tag, force=True)


def build(ws: ScratchWorkspace, *args: str) -> tuple[int, str, dict[str, str]]:
    """Exit code, output, and ``{label: status}`` from the JSON report."""
    report = ws.root.parent / f"report-{uuid.uuid4().hex[:6]}.json"
    result = ws.run("build", "--report", str(report), *args)
    statuses = {}
    if report.exists():
        statuses = {n["label"]: n["status"] for n in json.loads(report.read_text())["nodes"]}
    return result.exit_code, result.output, statuses


def level_lines(output: str, level: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{level} ")]


def test_a_registry_refusing_us_is_one_error_and_a_local_build(
    app: tuple[ScratchWorkspace, str], auth_registry: str, docker_config: Path
) -> None:
    ws, _ = app
    code, output, statuses = build(ws, "--registry", auth_registry)
    assert code == 0, output
    assert statuses == {"//app:app": "built"}
    [error] = level_lines(output, "ERROR")
    assert f"registry cache {auth_registry} refused access" in error and "HTTP 401" in error, output
    assert "docker login" in error  # what to do about it
    assert not [line for line in level_lines(output, "WARNING") if "registry" in line], output


def test_a_required_registry_refusing_us_fails_the_build(
    app: tuple[ScratchWorkspace, str], auth_registry: str, docker_config: Path
) -> None:
    ws, _ = app
    code, output, statuses = build(ws, "--registry", auth_registry, "--require-registry")
    assert code == 1, output
    [error] = level_lines(output, "ERROR")
    assert f"the registry cache {auth_registry} is required" in error and "HTTP 401" in error, output
    assert statuses == {}  # it failed before building anything

    ws.write({"WORKSPACE": f'workspace(platforms = ["{host_platform()}"], require_registry = True)\n'})
    code, output, _ = build(ws, "--registry", auth_registry)
    assert code == 1 and "is required" in output, output
    code, output, statuses = build(ws, "--registry", auth_registry, "--no-require-registry")
    assert code == 0 and statuses == {"//app:app": "built"}, output


def test_a_required_registry_that_is_down_fails_the_build(app: tuple[ScratchWorkspace, str]) -> None:
    from tests.registry_server import free_port

    ws, _ = app
    address = f"127.0.0.1:{free_port()}"
    code, output, _ = build(ws, "--registry", address, "--require-registry")
    assert code == 1, output
    [error] = level_lines(output, "ERROR")
    assert f"the registry cache {address} is required" in error and "cannot reach" in error, output


def test_credentials_from_a_credential_helper_share_the_cache(
    app: tuple[ScratchWorkspace, str],
    auth_registry: str,
    docker_config: Path,
    docker_api: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testhelper"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {auth_registry: "testhelper"}}))
    ws, repository = app

    code, output, statuses = build(ws, "--registry", auth_registry, "--require-registry")
    assert code == 0, output
    assert statuses == {"//app:app": "built"}
    assert not level_lines(output, "ERROR") and not level_lines(output, "WARNING"), output

    remove_images(docker_api, repository)  # machine B: none of the images, a cache directory of its own
    ws.cache_dir = tmp_path / "machine-b"
    code, output, statuses = build(ws, "--registry", auth_registry, "--require-registry", "--load")
    assert code == 0, output
    assert statuses == {"//app:app": "pulled"}  # the engine pulled with the helper's credentials too
    assert docker.APIClient().inspect_image(f"{repository}:latest")["Id"]
