"""``orchestrator gc`` on the real engine and registry: a family built five times with edits."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator

import docker
import pytest

from orchestrator.core.platforms import host_platform
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(docker_engine: object) -> Iterator[str]:
    prefix = f"og-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = docker.APIClient()
    try:
        for image in client.images():
            for tag in image.get("RepoTags") or []:
                if prefix in tag:
                    client.remove_image(tag, force=True)
    finally:
        client.close()


def engine_tags(prefix: str) -> set[str]:
    client = docker.APIClient()
    try:
        return {tag for image in client.images() for tag in image.get("RepoTags") or [] if prefix in tag}
    finally:
        client.close()


def registry_tags(registry: str, repository: str) -> set[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list") as response:
        return set(json.load(response).get("tags") or [])


def test_gc_after_five_edited_builds_leaves_exactly_what_the_rule_keeps(
    workspace: ScratchWorkspace, busybox_image: str, registry: str, prefix: str
) -> None:
    p = prefix
    workspace.write(
        {
            "WORKSPACE": f'workspace(registry = "{registry}")\n',
            "base/BUILD": f'image(name = "base", repository = "{p}-base")\n',
            "base/Dockerfile": f"FROM {busybox_image}\nCOPY motd /etc/motd\n",
            "base/motd": "hello\n",
            "leaf/BUILD": f'image(name = "leaf", repository = "{p}-leaf", tags = ["latest", "1"])\n',
            "leaf/Dockerfile": f"FROM {p}-base\nCOPY app.txt /app.txt\n",
        }
    )
    leaf_keys = []
    for version in range(5):
        workspace.write({"leaf/app.txt": f"v{version}\n"})
        result = workspace.run("build", "--push")
        assert result.exit_code == 0, result.output
        leaf_keys.append(workspace.keys()[f"//leaf:leaf {host_platform()}"])
        time.sleep(1.1)  # build records and image times are in whole seconds
    base_key = workspace.keys()[f"//base:base {host_platform()}"]
    assert len(set(leaf_keys)) == 5
    before_engine, before_registry = engine_tags(p), registry_tags(registry, f"{p}-leaf")
    assert {f"key-{k}" for k in leaf_keys} <= before_registry

    dry = workspace.run("gc", "--keep", "2", "--registry", registry, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would remove" in dry.output and engine_tags(p) == before_engine
    assert registry_tags(registry, f"{p}-leaf") == before_registry

    result = workspace.run("gc", "--keep", "2", "--registry", registry)
    assert result.exit_code == 0, result.output
    gone, kept = leaf_keys[:3], leaf_keys[3:]
    for key in gone:
        assert f"removed {p}-leaf:key-{key}" in result.output
    assert "tags removed" in result.output and "freed" in result.output

    pushed = f"{registry}/{p}"
    assert engine_tags(p) == {
        f"{p}-base:latest",
        f"{p}-base:key-{base_key}",
        f"{pushed}-base:key-{base_key}",
        f"{p}-leaf:latest",
        f"{p}-leaf:1",
        *(f"{p}-leaf:key-{k}" for k in kept),
        *(f"{pushed}-leaf:key-{k}" for k in kept),
    }
    assert registry_tags(registry, f"{p}-leaf") == {"latest", "1", *(f"key-{k}" for k in kept)}
    assert registry_tags(registry, f"{p}-base") == {"latest", f"key-{base_key}"}

    again = workspace.run("gc", "--keep", "2", "--registry", registry)
    assert again.exit_code == 0, again.output
    assert "removed" not in again.output.replace("tags removed", "")
