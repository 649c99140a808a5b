"""``build`` on the real engine fails before anything is built on an external base found nowhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import pytest

from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

MISSING = "busybox:does-not-exist-anywhere"


@pytest.fixture
def prefix(docker_engine: object) -> Iterator[str]:
    """A repository prefix of this test's own; whatever carries it is removed afterwards."""
    value = f"obnf-{uuid.uuid4().hex[:8]}"
    yield value
    for tag in engine_tags(value):
        client = docker.APIClient()
        try:
            client.remove_image(tag, force=True)
        finally:
            client.close()


def engine_tags(prefix: str) -> list[str]:
    client = docker.APIClient()
    try:
        return [tag for image in client.images() for tag in image.get("RepoTags") or [] if tag.startswith(prefix)]
    finally:
        client.close()


def write_family(ws: ScratchWorkspace, prefix: str, busybox: str, missing: str) -> None:
    """A base on the test busybox (which the engine has), and two images using ``missing``."""
    ws.write(
        {
            "WORKSPACE": "",
            "base/BUILD": f'image(name = "base", repository = "{prefix}-base")\n',
            "base/Dockerfile": f"FROM {busybox}\nRUN echo base > /base\n",
            "app/BUILD": f'image(name = "app", repository = "{prefix}-app")\n',
            "app/Dockerfile": f"FROM {prefix}-base\nCOPY --from={missing} /bin/busybox /bin/\n",
            "tool/BUILD": f'image(name = "tool", repository = "{prefix}-tool")\n',
            "tool/Dockerfile": f"FROM {missing}\nRUN true\n",
        }
    )


def test_a_base_found_nowhere_fails_the_build_before_anything_is_built(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str
) -> None:
    write_family(workspace, prefix, busybox_image, MISSING)
    result = workspace.run("build")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        f"ERROR cannot find the base image {MISSING} (used by //app:app, //tool:tool): the engine does not have it"
    ), result.stderr
    assert "fix the reference if it is a typo" in result.stderr and "docker pull" in result.stderr
    assert engine_tags(prefix) == []  # not even //base:base, which does not use it


def test_a_base_the_registry_it_names_does_not_have_fails_the_build(
    workspace: ScratchWorkspace, busybox_image: str, registry: str, prefix: str
) -> None:
    missing = f"{registry}/{prefix}/{MISSING}"
    write_family(workspace, prefix, busybox_image, missing)
    result = workspace.run("build")
    assert result.exit_code == 2, result.output
    assert f"ERROR cannot find the base image {missing} (used by //app:app, //tool:tool)" in result.stderr
    assert f"the registry {registry} has no {prefix}/{MISSING}" in result.stderr
    assert engine_tags(prefix) == []
