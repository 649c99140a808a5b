"""images.lock records a pinned base's ONBUILD triggers, read from the real engine; lint warns of unpinned ones."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.core.platforms import host_platform
from orchestrator.engine.docker import DockerExecutor
from orchestrator.registry.pins import Resolver
from orchestrator.workspace.lockfile import LOCK_FILE, Pin, read_lock
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(docker_api: Any) -> Iterator[str]:
    """A unique name prefix; every image tagged with it is removed afterwards."""
    value = f"ob-{uuid.uuid4().hex[:8]}"
    yield value
    for image in docker_api.images():
        for tag in image.get("RepoTags") or []:
            if value in tag:
                docker_api.remove_image(tag, force=True)


def build_image(api: Any, dockerfile: str, tag: str) -> str:
    """``docker build`` of a Dockerfile without context; the image ID."""
    image_id = None
    for message in api.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, decode=True):
        assert "error" not in message, message
        if "aux" in message and "ID" in message["aux"]:
            image_id = message["aux"]["ID"]
    assert image_id is not None
    return str(image_id)


def test_lock_records_onbuild_triggers_and_lint_warns_of_unpinned_ones(
    workspace: ScratchWorkspace, busybox_image: str, docker_api: Any, prefix: str
) -> None:
    triggered, plain = f"{prefix}-onbuild-base:1", f"{prefix}-plain-base:1"
    triggered_id = build_image(docker_api, f"FROM {busybox_image}\nONBUILD COPY . /x\n", triggered)
    docker_api.tag(busybox_image, f"{prefix}-plain-base", "1")
    assert docker_api.inspect_image(triggered)["Config"]["OnBuild"] == ["COPY . /x"]
    workspace.write(
        {
            "a/BUILD": f'image(name = "a", repository = "{prefix}-a")\n',
            "a/Dockerfile": f"FROM {triggered}\nRUN true\n",
            "a/file.txt": "read by the trigger\n",
            "b/BUILD": f'image(name = "b", repository = "{prefix}-b")\n',
            "b/Dockerfile": f"FROM {plain}\nRUN true\n",
        }
    )

    # unpinned: lint warns of the base with triggers (and only of it)
    report = lint(workspace)
    orc006 = [f for f in report["findings"] if f["rule"] == "ORC006"]
    assert [(f["target"], f["line"]) for f in orc006] == [("//a:a", 1)], orc006
    assert "an unpinned base with ONBUILD triggers" in orc006[0]["message"]

    result = workspace.run("lock")
    assert result.exit_code == 0, result.output
    assert f"pinned  {triggered} " in result.output and "ONBUILD triggers" in result.output
    bases = json.loads((workspace.root / LOCK_FILE).read_text())["bases"]
    [(platform, pin)] = bases[triggered].items()
    assert pin == {"digest": triggered_id, "onbuild": True, "source": "engine"}
    assert bases[plain][platform] == {"digest": docker_api.inspect_image(plain)["Id"], "source": "engine"}
    lock = read_lock(workspace.root)
    assert lock is not None and lock.bases_with_triggers() == {triggered}

    # pinned: its triggers are recorded, so lint has nothing to say of it
    report = lint(workspace)
    assert [f for f in report["findings"] if f["rule"] == "ORC006"] == []


def test_a_registry_pin_reads_the_triggers_from_the_config_blob(
    docker_engine: DockerExecutor, docker_api: Any, busybox_image: str, registry: str, prefix: str
) -> None:
    triggered, plain = f"{registry}/{prefix}-onbuild:1", f"{registry}/{prefix}-plain:1"
    build_image(docker_api, f"FROM {busybox_image}\nONBUILD RUN echo hi\n", triggered)
    docker_api.tag(busybox_image, f"{registry}/{prefix}-plain", "1")
    pushed = {reference: docker_engine.push(reference) for reference in (triggered, plain)}
    resolver = Resolver(None)  # the registry only
    try:
        platform = host_platform()
        assert resolver.resolve(triggered, platform) == Pin(digest=pushed[triggered], source="registry", onbuild=True)
        assert resolver.resolve(plain, platform) == Pin(digest=pushed[plain], source="registry")
        by_digest = f"{registry}/{prefix}-onbuild@{pushed[triggered]}"
        assert resolver.resolve(by_digest, platform).onbuild is True
    finally:
        resolver.close()


def lint(ws: ScratchWorkspace) -> dict[str, Any]:
    """``lint --output json``: the report (warnings leave the exit code at 0)."""
    result = ws.run("lint", "--output", "json")
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report
