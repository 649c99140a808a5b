"""BuildKit and the classic builder make the same images: a differential test on the real engine.

One small family is written twice, into two workspaces that differ only in their repositories
(``<prefix>-buildkit-*`` and ``<prefix>-classic-*``): so neither build can find the other's content
tags (keys do not depend on the executor, but they do on the Dockerfiles' FROM lines, which name
the repositories). One is built with ``build --executor buildkit``, the other with ``--executor
classic``; every node must be built, by the executor asked for (the JSON report says so). Then each
pair of images is compared as ``docker export`` gives their file systems (``tests/images.py``):
paths, types, modes, uid/gid, content hashes and symlink targets, not mtimes nor what container
creation adds; and their run configuration (user, working directory, environment, command). One
difference is Docker's own and known (``KNOWN_DIVERGENCES``: the owner of a WORKDIR created after
USER): left out of the comparison and pinned instead.

The family, on a busybox root file system (a ``rootfs_image`` script: the host's static busybox for
linux/amd64, ``cache/busybox/linux-arm64/busybox`` for linux/arm64, plus a file with this run's
nonce, so that no layer cache of an earlier run can answer either builder):

- ``base`` (linux/amd64 and linux/arm64, the arm64 one under QEMU): COPY of a directory with an
  executable, a symlink, an empty directory and a nested file; RUN mkdir, chmod (setgid, 0700,
  0600), chown to other uids/gids, ln -s (a dangling link too);
- ``child``: multi-stage: a stage generating files from an ARG (set by ``build_args``), COPY
  --from that stage (``--chown`` too), an ARG-templated COPY source, USER, WORKDIR, ENV;
- ``bare``: FROM scratch, COPY --from both images of the family, and a file of its own.

Twice: with precise contexts (what the Dockerfiles read), and with ``base``'s context given as
``srcs = glob([...])`` (files without their directories' entries).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.images import diff, filesystem
from tests.integration.conftest import TEST_LABEL, _remove_labelled_images
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

EXECUTORS = ("buildkit", "classic")
BOTH = '["linux/amd64", "linux/arm64"]'
APPLETS = ("sh", "cat", "echo", "ls", "true", "mkdir", "chmod", "chown", "ln", "touch", "id")

# Writes a busybox root file system for $PLATFORM into $OUT (rootfs_image's script contract).
ROOTFS_SCRIPT = """#!/bin/sh
set -eu
case "$PLATFORM" in
  linux/amd64) bin=/bin/busybox ;;
  linux/arm64) bin={arm64} ;;
  *) echo "no busybox for $PLATFORM" >&2; exit 1 ;;
esac
dir=$(mktemp -d)
mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc"
chmod 1777 "$dir/tmp"
cp "$bin" "$dir/bin/busybox"
for applet in {applets}; do ln -s busybox "$dir/bin/$applet"; done
echo {nonce} > "$dir/etc/nonce"
tar --sort=name --mtime=@0 --owner=0 --group=0 -C "$dir" -cf "$OUT" .
rm -rf "$dir"
"""


def family_files(p: str, nonce: str, arm64_busybox: Path, *, globbed: bool = False) -> dict[str, str]:
    labels = f'labels = {{"{TEST_LABEL}": "{p}"}}'
    srcs = 'srcs = glob(["files/**", "tool.sh"]), ' if globbed else ""
    return {
        "WORKSPACE": 'workspace(platforms = ["linux/amd64"])\n',
        "rootfs/BUILD": (
            f'rootfs_image(name = "busybox", script = "make.sh", repository = "{p}-busybox", tags = ["1"], '
            f"platforms = {BOTH})\n"
        ),
        "rootfs/make.sh": ROOTFS_SCRIPT.format(arm64=arm64_busybox, applets=" ".join(APPLETS), nonce=nonce),
        "base/BUILD": f'image(name = "base", repository = "{p}-base", platforms = {BOTH}, {srcs}{labels})\n',
        "base/Dockerfile": (
            f"FROM {p}-busybox:1\n"
            "COPY files/ /opt/files/\n"
            "COPY tool.sh /usr/local/bin/tool\n"
            "RUN mkdir -p /var/lib/app/empty /var/lib/app/private /var/lib/app/shared \\\n"
            "    && chmod 700 /var/lib/app/private && chmod 2775 /var/lib/app/shared \\\n"
            "    && chown -R 1000:1000 /var/lib/app && chown 123:456 /opt/files/data.txt \\\n"
            "    && ln -s /opt/files/data.txt /var/lib/app/data && ln -s ../missing /var/lib/app/dangling \\\n"
            "    && echo base > /base.txt && chmod 600 /base.txt && touch /var/lib/app/stamp\n"
        ),
        "base/files/data.txt": "data\n",
        "base/files/nested/deeper/file.txt": "deep\n",
        "base/files/bin/run.sh": "#!/bin/sh\necho run\n",
        "base/tool.sh": "#!/bin/sh\necho tool\n",
        "child/BUILD": (
            f'image(name = "child", repository = "{p}-child", '
            f'build_args = {{"VARIANT": "fancy", "LEVEL": "high"}}, {labels})\n'
        ),
        "child/Dockerfile": (
            "ARG VARIANT=plain\n"
            f"FROM {p}-base:latest AS gen\n"
            "ARG VARIANT\n"
            "RUN mkdir -p /out/sub/empty && echo variant=$VARIANT > /out/variant.txt \\\n"
            "    && chmod 640 /out/variant.txt && ln -s variant.txt /out/current && chown -R 1000:1000 /out/sub\n"
            f"FROM {p}-base:latest\n"
            "ARG LEVEL=low\n"
            "COPY --from=gen /out /srv/gen\n"
            "COPY --from=gen --chown=1000:1000 /out/variant.txt /srv/owned.txt\n"
            "COPY conf/${LEVEL}.conf /etc/level.conf\n"
            'RUN echo "level=$LEVEL" > /level.txt && mkdir -p /home/app && chown 1000:1000 /home/app\n'
            "ENV APP_HOME=/home/app\n"
            "USER 1000:1000\n"
            "WORKDIR /home/app/work\n"
            'CMD ["sh", "-c", "cat /srv/gen/current"]\n'
        ),
        "child/conf/low.conf": "low\n",
        "child/conf/high.conf": "high\n",
        "bare/BUILD": f'image(name = "bare", repository = "{p}-bare", {labels})\n',
        "bare/Dockerfile": (
            "FROM scratch\n"
            f"COPY --from={p}-child:latest /srv/gen /gen\n"
            f"COPY --from={p}-base:latest /bin/busybox /bin/busybox\n"
            "COPY own.txt /own.txt\n"
            'ENTRYPOINT ["/bin/busybox"]\n'
        ),
        "bare/own.txt": "mine\n",
    }


def write_family(root: Path, p: str, nonce: str, arm64_busybox: Path, *, globbed: bool) -> ScratchWorkspace:
    ws = ScratchWorkspace(root=root / "ws", cache_dir=root / "cache")
    ws.write(family_files(p, nonce, arm64_busybox, globbed=globbed))
    (ws.root / "base/files/empty").mkdir()
    (ws.root / "base/files/link").symlink_to("data.txt")
    for rel in ("base/files/bin/run.sh", "base/tool.sh", "rootfs/make.sh"):
        os.chmod(ws.root / rel, 0o755)
    return ws


@pytest.fixture
def prefix(docker_engine: Any, docker_api: Any) -> Iterator[str]:
    """A unique repository prefix; its tags, containers and labelled images are removed afterwards."""
    prefix = f"ot-exdiff-{uuid.uuid4().hex[:8]}"
    yield prefix
    for container in docker_api.containers(all=True, filters={"label": f"{TEST_LABEL}={prefix}"}):
        docker_api.remove_container(container["Id"], force=True)
    for image in docker_api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix):
                docker_api.remove_image(tag, force=True)
    for executor in EXECUTORS:
        _remove_labelled_images(docker_api, f"{TEST_LABEL}={prefix}-{executor}")


# Where the builders differ (Docker's behaviour, not the orchestrator's): a WORKDIR that does not exist
# yet is created owned by the current USER under BuildKit, by root under the classic builder
# (docker/cli#3346, moby/buildkit#1002). Left out of the comparison, pinned here: (uid, gid) per builder.
KNOWN_DIVERGENCES: dict[str, dict[str, dict[str, tuple[int, int]]]] = {
    "//child:child linux/amd64": {"home/app/work": {"buildkit": (1000, 1000), "classic": (0, 0)}},
}


def run_config(config: dict[str, Any]) -> dict[str, Any]:
    """What of an image's configuration decides how it runs, with the builders' spellings made one:
    BuildKit writes an unset working directory as ``/`` where the classic builder leaves it empty
    (both mean ``/``)."""
    return {
        "User": config.get("User") or "",
        "WorkingDir": config.get("WorkingDir") or "/",
        "Env": config.get("Env") or [],
        "Cmd": config.get("Cmd") or [],
        "Entrypoint": config.get("Entrypoint") or [],
    }


@pytest.mark.parametrize(
    "globbed",
    [
        pytest.param(False, id="precise-context"),
        pytest.param(True, id="srcs-glob"),  # files without their directories' entries
    ],
)
def test_buildkit_and_classic_images_have_the_same_file_systems(
    globbed: bool, arm64_busybox: Path, prefix: str, docker_api: Any, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex
    built: dict[str, dict[str, dict[str, Any]]] = {}
    for executor in EXECUTORS:
        ws = write_family(tmp_path / executor, f"{prefix}-{executor}", nonce, arm64_busybox, globbed=globbed)
        report_path = tmp_path / f"{executor}.json"
        result = ws.run("build", "//...", "--executor", executor, "--report", str(report_path))
        assert result.exit_code == 0, result.output
        report = json.loads(report_path.read_text())
        assert report["executor"]["requested"] == executor
        assert report["executor"]["used"] == executor
        nodes = {f"{n['label']} {n['platform']}": n for n in report["nodes"]}
        assert {name: n["status"] for name, n in nodes.items()} == {
            "//rootfs:busybox linux/amd64": "built",
            "//rootfs:busybox linux/arm64": "built",
            "//base:base linux/amd64": "built",
            "//base:base linux/arm64": "built",
            "//child:child linux/amd64": "built",
            "//bare:bare linux/amd64": "built",
        }
        for name, node in nodes.items():
            if not name.startswith("//rootfs:"):
                assert node["executor"] == executor, (name, node)
        built[executor] = nodes

    assert built["buildkit"].keys() == built["classic"].keys()
    checked = []
    for name in built["buildkit"]:
        if name.startswith("//rootfs:"):
            continue
        images = {executor: built[executor][name]["image_id"] for executor in EXECUTORS}
        assert images["buildkit"] != images["classic"], name  # two builds, not one image found twice
        systems = {executor: filesystem(docker_api, image, (TEST_LABEL, prefix)) for executor, image in images.items()}
        for path, owners in KNOWN_DIVERGENCES.get(name, {}).items():  # each pinned: still as documented
            found = {executor: systems[executor].pop(path)[2:4] for executor in EXECUTORS}
            assert found == owners, (name, path, found)
        differences = diff(systems["buildkit"], systems["classic"], EXECUTORS)
        assert not differences, f"{name}:\n" + "\n".join(differences)
        configs = {executor: docker_api.inspect_image(image)["Config"] for executor, image in images.items()}
        runs = {executor: run_config(config) for executor, config in configs.items()}
        assert runs["buildkit"] == runs["classic"], name
        inspected = docker_api.inspect_image(images["buildkit"])
        assert f"{inspected['Os']}/{inspected['Architecture']}" == name.split()[1]
        checked.append((name, systems["buildkit"]))

    # The comparison saw what the family is there to exercise (else an empty export would pass).
    seen = dict(checked)
    for platform in ("linux/amd64", "linux/arm64"):
        base = seen[f"//base:base {platform}"]
        assert base["etc/nonce"][0] == "file"
        assert base["usr/local/bin/tool"][1] == 0o755 and base["opt/files/data.txt"][1:4] == (0o644, 123, 456)
        assert base["opt/files/link"][::4] == ("symlink", "data.txt") and base["opt/files/nested/deeper"][0] == "dir"
        assert base["var/lib/app/private"][1:4] == (0o700, 1000, 1000)
        assert base["var/lib/app/shared"][1] == 0o2775 and base["base.txt"][1] == 0o600
        assert base["var/lib/app/dangling"][::4] == ("symlink", "../missing")
        if not globbed:  # a glob matches files: an empty directory is no input then
            assert base["opt/files/empty"][0] == "dir"
    child = seen["//child:child linux/amd64"]
    assert child["srv/gen/current"][::4] == ("symlink", "variant.txt") and child["srv/gen/variant.txt"][1] == 0o640
    assert child["srv/owned.txt"][2:4] == (1000, 1000) and child["srv/gen/sub/empty"][2:4] == (1000, 1000)
    assert child["etc/level.conf"][0] == "file" and child["level.txt"][0] == "file"
    bare = seen["//bare:bare linux/amd64"]
    assert {"gen/current", "gen/variant.txt", "bin/busybox", "own.txt"} <= set(bare)
    assert "bin/sh" not in bare
