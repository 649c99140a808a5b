"""Several platforms under QEMU, and a registry shared as a cache, on the real engine and registry."""

from __future__ import annotations

import itertools
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.core.platforms import host_platform
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

# Writes a busybox root file system for $PLATFORM into $OUT (rootfs_image's script contract).
ROOTFS_SCRIPT = """#!/bin/sh
set -eu
case "$PLATFORM" in
  linux/amd64) bin=/bin/busybox ;;
  linux/arm64) bin={arm64} ;;
  *) echo "no busybox for $PLATFORM" >&2; exit 1 ;;
esac
dir=$(mktemp -d)
mkdir -p "$dir/bin" "$dir/tmp"
cp "$bin" "$dir/bin/busybox"
for applet in sh cat echo uname ls true; do ln -s busybox "$dir/bin/$applet"; done
tar --sort=name --mtime=@0 --owner=0 --group=0 -C "$dir" -cf "$OUT" .
rm -rf "$dir"
"""

INDEX_TYPES = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"


class Family:
    """busybox (a rootfs script) -> base -> mid -> leaf, with unique repositories ``<prefix>-*``."""

    def __init__(self, ws: ScratchWorkspace, *, platforms: list[str], arm64_busybox: Path | None) -> None:
        self.ws = ws
        self.prefix = p = f"op-{uuid.uuid4().hex[:8]}"
        ws.write(
            {
                "WORKSPACE": f"workspace(platforms = {json.dumps(platforms)})\n",
                "rootfs/BUILD": (
                    f'rootfs_image(name = "busybox", script = "make.sh", repository = "{p}-busybox", tags = ["1"])\n'
                ),
                "rootfs/make.sh": ROOTFS_SCRIPT.format(arm64=arm64_busybox or "/nonexistent"),
                "base/BUILD": f'image(name = "base", repository = "{p}-base")\n',
                "base/Dockerfile": f"FROM {p}-busybox:1\nRUN uname -m > /arch\n",
                "mid/BUILD": f'image(name = "mid", repository = "{p}-mid", tags = ["latest", "2"])\n',
                "mid/Dockerfile": f"FROM {p}-base\nRUN cat /arch > /mid-arch\n",
                "leaf/BUILD": f'image(name = "leaf", repository = "{p}-leaf")\n',
                "leaf/Dockerfile": f"FROM {p}-mid:2\nCOPY app.txt /app.txt\n",
                "leaf/app.txt": "v1\n",
                # FROM scratch with the same files for every platform: the classic builder's cache
                # would hand the second platform the first one's layer.
                "data/BUILD": f'image(name = "data", repository = "{p}-data")\n',
                "data/Dockerfile": "FROM scratch\nCOPY data.txt /data.txt\n",
                "data/data.txt": "same on every platform\n",
            }
        )

    def build(self, *args: str, cache_dir: Path | None = None) -> tuple[int, dict[str, Any], str]:
        report = self.ws.root.parent / f"report-{uuid.uuid4().hex[:6]}.json"
        if cache_dir is not None:
            self.ws.cache_dir = cache_dir
        result = self.ws.run("build", "--report", str(report), *args)
        data = json.loads(report.read_text()) if report.exists() else {}
        return result.exit_code, data, result.output

    def remove_images(self) -> None:
        """Every image of the family from the engine, registry-named ones included (a new machine)."""
        client = docker.APIClient()
        try:
            for image in client.images():
                for tag in image.get("RepoTags") or []:
                    if self.prefix in tag:
                        client.remove_image(tag, force=True)
        finally:
            client.close()


def nodes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{n['label']} {n['platform']}": n for n in report["nodes"]}


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {name: node["status"] for name, node in nodes(report).items()}


@pytest.fixture
def engine() -> Iterator[Any]:
    client = docker.APIClient()
    yield client
    client.close()


def make_family(workspace: ScratchWorkspace, **kwargs: Any) -> Iterator[Family]:
    family = Family(workspace, **kwargs)
    yield family
    family.remove_images()


@pytest.fixture
def two_platforms(workspace: ScratchWorkspace, docker_engine: object, arm64_busybox: Path) -> Iterator[Family]:
    yield from make_family(workspace, platforms=["linux/amd64", "linux/arm64"], arm64_busybox=arm64_busybox)


@pytest.fixture
def host_family(workspace: ScratchWorkspace, docker_engine: object) -> Iterator[Family]:
    if host_platform() != "linux/amd64":
        pytest.skip("the family's rootfs script knows amd64 and arm64 busybox only")
    yield from make_family(workspace, platforms=[host_platform()], arm64_busybox=None)


def run_in(image: str, *command: str) -> str:
    client = docker.from_env()
    try:
        output: bytes = client.containers.run(image, list(command), remove=True)
    finally:
        client.close()
    return output.decode().strip()


def test_two_platforms_each_on_its_own_parent(two_platforms: Family, engine: Any) -> None:
    code, report, output = two_platforms.build()
    assert code == 0, output
    built = nodes(report)
    assert len(built) == 10 and {n["status"] for n in built.values()} == {"built"}
    for platform, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        arch = platform.split("/")[1]
        images = {label: engine.inspect_image(built[f"{label} {platform}"]["tags"][0]) for label in LEVELS}
        images["//data:data"] = engine.inspect_image(built[f"//data:data {platform}"]["tags"][0])
        for label, image in images.items():
            assert (image["Os"], image["Architecture"]) == ("linux", arch), label
        # each child rests on the same-platform parent: the parent's layers are the child's first ones
        for parent, child in itertools.pairwise(LEVELS):
            parent_layers = images[parent]["RootFS"]["Layers"]
            assert images[child]["RootFS"]["Layers"][: len(parent_layers)] == parent_layers, (platform, child)
        leaf = built[f"//leaf:leaf {platform}"]["tags"][0]
        assert run_in(leaf, "cat", "/arch") == machine  # what uname -m said while building
        assert run_in(leaf, "uname", "-m") == machine  # and says now, under emulation for arm64
    # the local human tag is the host's platform
    assert engine.inspect_image(f"{two_platforms.prefix}-leaf:latest")["Architecture"] == "amd64"


LEVELS = ["//rootfs:busybox", "//base:base", "//mid:mid", "//leaf:leaf"]


def test_push_leaves_an_index_of_both_platforms_per_human_tag(two_platforms: Family, registry: str) -> None:
    code, report, output = two_platforms.build("--registry", registry, "--push")
    assert code == 0, output
    p = two_platforms.prefix
    assert f"{registry}/{p}-mid:2" in report["pushed"] and f"{registry}/{p}-mid:latest" in report["pushed"]
    built = nodes(report)
    for repository, tag, label in (
        (f"{p}-busybox", "1", "//rootfs:busybox"),
        (f"{p}-base", "latest", "//base:base"),
        (f"{p}-mid", "2", "//mid:mid"),
        (f"{p}-mid", "latest", "//mid:mid"),
        (f"{p}-leaf", "latest", "//leaf:leaf"),
    ):
        index = get_json(f"http://{registry}/v2/{repository}/manifests/{tag}", INDEX_TYPES)
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m for m in index["manifests"]}
        assert set(platforms) == {"linux/amd64", "linux/arm64"}
        for platform, entry in platforms.items():
            # the entry is the content tag's manifest: the image built for that platform and key
            content_tag = built[f"{label} {platform}"]["tags"][0].rpartition(":")[2]
            manifest = get_json(
                f"http://{registry}/v2/{repository}/manifests/{content_tag}", entry["mediaType"], with_digest=True
            )
            assert manifest["digest"] == entry["digest"]


def get_json(url: str, accept: str, *, with_digest: bool = False) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        if with_digest:
            data["digest"] = response.headers["Docker-Content-Digest"]
    return data


def test_a_second_machine_builds_nothing_and_pulls_only_what_it_must(
    host_family: Family, registry: str, tmp_path: Path, engine: Any
) -> None:
    code, report, output = host_family.build("--registry", registry, cache_dir=tmp_path / "machine-a")
    assert code == 0, output
    assert set(statuses(report).values()) == {"built"}

    host_family.remove_images()  # machine B: another engine (none of the images), another cache directory
    code, report, output = host_family.build("--registry", registry, cache_dir=tmp_path / "machine-b")
    assert code == 0, output
    assert set(statuses(report).values()) == {"remote-cached"}
    assert not family_images(engine, host_family.prefix)  # nothing pulled: nothing needed it

    host_family.ws.write({"leaf/app.txt": "v2\n"})
    code, report, output = host_family.build("--registry", registry)
    assert code == 0, output
    host = host_platform()
    assert statuses(report) == {
        f"//rootfs:busybox {host}": "remote-cached",
        f"//base:base {host}": "remote-cached",
        f"//mid:mid {host}": "pulled",
        f"//leaf:leaf {host}": "built",
        f"//data:data {host}": "remote-cached",
    }
    leaf = engine.inspect_image(f"{host_family.prefix}-leaf:latest")
    mid = engine.inspect_image(nodes(report)[f"//mid:mid {host}"]["tags"][0])
    assert leaf["RootFS"]["Layers"][: len(mid["RootFS"]["Layers"])] == mid["RootFS"]["Layers"]
    assert run_in(f"{host_family.prefix}-leaf:latest", "cat", "/app.txt") == "v2"


def family_images(engine: Any, prefix: str) -> list[str]:
    return [tag for image in engine.images() for tag in image.get("RepoTags") or [] if prefix in tag]


def test_registry_down_is_a_warning_and_a_local_build(host_family: Family, tmp_path: Path) -> None:
    from tests.registry_server import free_port

    code, report, output = host_family.build("--registry", f"127.0.0.1:{free_port()}")
    assert code == 0, output
    assert set(statuses(report).values()) == {"built"}
    assert "WARNING" in output and "unavailable, building locally" in output
    assert any("unavailable" in w for w in report["warnings"])


def test_an_overwritten_content_tag_is_detected_and_rebuilt(
    host_family: Family, registry: str, tmp_path: Path, engine: Any
) -> None:
    code, report, output = host_family.build("--registry", registry, cache_dir=tmp_path / "machine-a")
    assert code == 0, output
    host = host_platform()
    mid = nodes(report)[f"//mid:mid {host}"]
    base = nodes(report)[f"//base:base {host}"]
    # another writer overwrites mid's content tag with the base image
    mid_tag = mid["tags"][0].rpartition(":")[2]
    engine.tag(base["image_id"], f"{registry}/{host_family.prefix}-mid", mid_tag)
    for _ in engine.push(f"{registry}/{host_family.prefix}-mid", tag=mid_tag, stream=True, decode=True):
        pass

    host_family.remove_images()
    host_family.ws.write({"leaf/app.txt": "v2\n"})  # the leaf must build, on mid
    code, report, output = host_family.build("--registry", registry, cache_dir=tmp_path / "machine-b")
    assert code == 0, output
    got = statuses(report)
    assert got[f"//mid:mid {host}"] == "built"  # not the poisoned image: rebuilt
    assert "not used, rebuilt" in nodes(report)[f"//mid:mid {host}"]["reason"]
    assert "WARNING" in output and mid_tag in output.replace("\n", "")
    assert got[f"//leaf:leaf {host}"] == "built"
    leaf = engine.inspect_image(f"{host_family.prefix}-leaf:latest")
    assert leaf["Config"]["Labels"]["org.orchestrator.key"] == nodes(report)[f"//leaf:leaf {host}"]["key"]
    assert run_in(f"{host_family.prefix}-mid:latest", "cat", "/mid-arch") == "x86_64"


def test_missing_emulator_is_reported_before_any_build(host_family: Family, tmp_path: Path) -> None:
    host_family.ws.write({"WORKSPACE": 'workspace(platforms = ["linux/amd64", "linux/loong64"])\n'})
    code, report, output = host_family.build()
    assert code == 2, output
    assert "linux/loong64" in output and "apt-get install qemu-user-static" in output
    assert report == {}  # nothing ran
