"""``orchestrator sbom`` on the real Docker Engine: the image's layers read without running it
(``docker save``), whiteouts applied, the SBOM cached by key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dpkg import OS_RELEASE, STATUS
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

METADATA = "Metadata-Version: 2.1\nName: Requests_Toolbelt\nVersion: 1.0.0\n\nA body.\n"
DIST_INFO = "/usr/lib/python3/dist-packages/requests_toolbelt-1.0.0.dist-info/METADATA"


@pytest.fixture
def family(workspace: ScratchWorkspace, busybox_image: str, docker_api: Any) -> Iterator[str]:
    """Three images: packages on scratch, a lone file on scratch, a status file a later layer deletes."""
    prefix = f"ot-sbom-{uuid.uuid4().hex[:8]}"
    workspace.write(
        {
            "WORKSPACE": "",
            "x/BUILD": f'image(name = "x", repository = "{prefix}-x")\n',
            "x/Dockerfile": (
                "FROM scratch\nCOPY status /var/lib/dpkg/status\nCOPY os-release /etc/os-release\n"
                f"COPY METADATA {DIST_INFO}\n"
            ),
            "x/status": STATUS,
            "x/os-release": OS_RELEASE,
            "x/METADATA": METADATA,
            "empty/BUILD": f'image(name = "empty", repository = "{prefix}-empty")\n',
            "empty/Dockerfile": "FROM scratch\nCOPY hello /hello\n",
            "empty/hello": "hi\n",
            "gone/BUILD": f'image(name = "gone", repository = "{prefix}-gone")\n',
            "gone/Dockerfile": (
                f"FROM {busybox_image}\nCOPY status /var/lib/dpkg/status\nRUN /bin/busybox rm /var/lib/dpkg/status\n"
            ),
            "gone/status": STATUS,
        }
    )
    yield prefix
    for image in docker_api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix):
                docker_api.remove_image(tag, force=True)


def _purls(document: dict[str, Any]) -> list[str]:
    return sorted(c["purl"] for c in document.get("components", []) if "purl" in c)


def test_sbom_lists_the_packages_then_comes_from_the_cache(workspace: ScratchWorkspace, family: str) -> None:
    first = workspace.run("-v", "sbom", "//x:x")
    assert first.exit_code == 0, first.output
    assert "read from the image's layers" in first.stderr
    document = json.loads(first.stdout)
    arch = "amd64"
    assert _purls(document) == [
        f"pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch={arch}",
        f"pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch={arch}",
        "pkg:pypi/requests-toolbelt@1.0.0",
    ]
    assert [c["name"] for c in document["components"] if c["type"] == "operating-system"] == ["debian"]
    image = document["metadata"]["component"]
    assert image["name"] == "//x:x" and image["version"] == workspace.keys("//x:x")[f"//x:x {_platform(image)}"]

    second = workspace.run("-v", "sbom", "//x:x")
    assert second.exit_code == 0, second.output
    assert "from the cache" in second.stderr
    assert second.stdout == first.stdout


def test_a_scratch_image_of_one_file_has_no_components(workspace: ScratchWorkspace, family: str) -> None:
    result = workspace.run("sbom", "//empty:empty")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout).get("components", []) == []


def test_a_status_file_a_later_layer_deletes_gives_no_deb_component(workspace: ScratchWorkspace, family: str) -> None:
    result = workspace.run("sbom", "//gone:gone")
    assert result.exit_code == 0, result.output
    assert [p for p in _purls(json.loads(result.stdout)) if p.startswith("pkg:deb/")] == []


def test_build_attest_sbom_fills_the_cache(workspace: ScratchWorkspace, family: str) -> None:
    keys = workspace.keys()
    built = workspace.run("build", "--attest", "sbom", "//x:x", "//empty:empty")
    assert built.exit_code == 0, built.output
    assert workspace.keys() == keys
    result = workspace.run("-v", "sbom", "//x:x")
    assert result.exit_code == 0, result.output
    assert "from the cache" in result.stderr
    assert "pkg:pypi/requests-toolbelt@1.0.0" in _purls(json.loads(result.stdout))


def _platform(image: dict[str, Any]) -> str:
    return next(p["value"] for p in image["properties"] if p["name"] == "orchestrator:platform")
