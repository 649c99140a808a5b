"""The scan gate on the real engine and the real registry: a scanner of the test's own (trivy cannot be
installed here) reads the image through ``DOCKER_HOST`` and fails the images labelled vulnerable."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.docker import DockerExecutor
from orchestrator.registry.client import Registry
from tests.integration.conftest import remove_prefixed
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

# Asks the engine DOCKER_HOST names for the image: the content tag must be there while the scan runs.
SCANNER = """\
#!{python}
import os, sys
import docker

ref = sys.argv[1]
client = docker.from_env()
labels = client.images.get(ref).labels
print("DOCKER_HOST", os.environ["DOCKER_HOST"])
print("scanned", ref, "verdict", labels.get("scan.verdict"))
sys.exit(1 if labels.get("scan.verdict") == "vulnerable" else 0)
"""


@pytest.fixture
def app(
    workspace: ScratchWorkspace, busybox_image: str, registry: str, docker_api: Any, tmp_path: Path
) -> Iterator[str]:
    """One image on busybox whose label the scanner reads; the workspace's registry cache is ``registry``."""
    scanner = tmp_path / "scan-image"
    scanner.write_text(SCANNER.format(python=sys.executable))
    scanner.chmod(0o755)
    repository = f"ot-scan-{uuid.uuid4().hex[:8]}"
    workspace.write(
        {
            "WORKSPACE": f'workspace(registry = "{registry}", scan = "{scanner} {{ref}}")\n',
            "app/BUILD": f'image(name = "app", repository = "{repository}")\n',
            "app/Dockerfile": f"FROM {busybox_image}\nLABEL scan.verdict=clean\n",
        }
    )
    yield repository
    remove_prefixed(docker_api, repository)


def test_a_failing_scan_leaves_the_human_tag_and_a_passing_one_moves_it(
    workspace: ScratchWorkspace, app: str, busybox_image: str, docker_engine: DockerExecutor, registry: str
) -> None:
    first = workspace.run("build")
    assert first.exit_code == 0, first.output
    clean = docker_engine.inspect(f"{app}:latest")
    assert clean is not None
    remote = Registry(registry)
    first_key = clean.labels["org.orchestrator.key"]
    assert remote.lookup(app, f"key-{first_key}") is not None

    workspace.write({"app/Dockerfile": f"FROM {busybox_image}\nLABEL scan.verdict=vulnerable\n"})
    (key,) = workspace.keys().values()
    failed = workspace.run("build")
    assert failed.exit_code == 1, failed.output
    assert "scan failed" in failed.stderr and "exited with code 1" in failed.stderr
    assert f"scanned {app}:key-{key} verdict vulnerable" in failed.stderr  # the scanner saw the content tag
    assert docker_engine.inspect(f"{app}:key-{key}") is None  # the content tag is gone again
    latest = docker_engine.inspect(f"{app}:latest")
    assert latest is not None and latest.image_id == clean.image_id  # the human tag did not move
    assert remote.lookup(app, f"key-{key}") is None  # nothing reached the registry cache

    workspace.write({"app/Dockerfile": f"FROM {busybox_image}\nLABEL scan.verdict=fixed\n"})
    (key,) = workspace.keys().values()
    passed = workspace.run("build")
    assert passed.exit_code == 0, passed.output
    moved = docker_engine.inspect(f"{app}:latest")
    assert moved is not None and moved.image_id != clean.image_id
    content = docker_engine.inspect(f"{app}:key-{key}")
    assert content is not None and content.image_id == moved.image_id
    remote.close()
