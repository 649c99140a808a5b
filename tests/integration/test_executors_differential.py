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

Then the real family, BUILD.examples (linux/amd64, copies of it): its RUN steps download and are
not reproducible, so contents are compared only where they are stable (see the section below).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import ROOT, examples_copy, link_or_copy
from tests.images import Entry, diff, filesystem
from tests.integration.conftest import TEST_LABEL, remove_prefixed
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
    remove_prefixed(docker_api, prefix, [f"{prefix}-{executor}" for executor in EXECUTORS])


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


# ---- BUILD.examples: the real family, whose RUN steps download ---------------------------------
#
# A copy of BUILD.examples per executor (benchmarks.common.examples_copy, as bench_executors makes
# them; the real tree and its cache/ are never written): linux/amd64 only (the arm64 half runs apt
# under QEMU for minutes), repositories renamed ``<prefix>-<executor>-*``, the rootfs's too (so the
# test moves no tag of the real family, debian:bookworm included), ``ENV BENCH_NONCE=<run>`` after
# the FROMs on the rootfs, python-app's ``srcs = glob(...)`` kept. The rootfs carries this test's
# label, which every image of the family inherits (intermediate stages the classic builder leaves
# included): they all go afterwards. Its tarball is the debootstrap output already in cache/rootfs/
# (hard-linked into the copy's own cache under the copy's key: a label changes a rootfs key, not the
# script's output); without one there, the first build runs the script and the second reuses its
# output. Each copy is built cold (apt downloads included): about 45-55 s per executor here.
#
# Unlike the busybox family, these RUN steps are not reproducible: apt-get writes logs and caches.
# Compared, per image, between the two executors:
# (1) the files that come from the build contexts (found by their content: the sha256 of every file
#     ``orchestrator explain -o json`` gives as a context input of the family), at the paths the
#     Dockerfiles' COPYs write (``EXAMPLE_COPIES``): the same paths, type, mode, uid/gid and content;
# (2) every other path: type, mode, uid/gid and symlink target, with no exclusion: two builds of the
#     family with the same executor (classic, twice, while this test was written) gave the same
#     paths, types, modes and owners everywhere (the Dockerfiles remove apt's lists themselves, and
#     nothing is left in /tmp or /root);
# (3) the contents of all other files too, but for ``VOLATILE_CONTENT``: the only files whose
#     contents differed between those two same-executor builds. This holds while both builds install
#     the same package versions (they run a minute apart on the same mirror): dpkg's status file is
#     compared first, to say so plainly if the mirror moved between them.
# And the run configuration (user, working directory, environment, command), as for busybox.

EXAMPLES_ROOTFS = "//rootfs:debian-bookworm"

# Per image (its name without the prefix): the paths of its file system whose content is a file of a
# build context of the family (its own, or inherited from its base), as the Dockerfiles COPY them.
# static-hello COPYs main.c into its builder stage only; secure-hello's context is its Dockerfile.
EXAMPLE_COPIES: dict[str, set[str]] = {
    "company-base": set(),
    "company-node-base": {"home/company/.npmrc"},
    "company-python-base": {"etc/pip.conf"},
    "node-app": {"home/company/.npmrc", "home/company/app/package.json", "home/company/app/src/server.js"},
    "python-app": {"etc/pip.conf", "home/company/app/main.py"},
    "static-hello": set(),
    "secure-hello": set(),
}

# Files (or trees) whose contents differ between two builds with the same executor: not compared.
VOLATILE_CONTENT = (
    # apt's history.log and term.log, dpkg.log, alternatives.log: every action with its date and time.
    "var/log",
    # apt's pkgcache.bin and srcpkgcache.bin (binary caches of the package lists, stamped with their
    # mtimes), ldconfig's aux-cache (inode numbers and mtimes of the libraries).
    "var/cache",
    # useradd's "last password change", in days since 1970: not seen to differ, but it would for two
    # builds on either side of midnight (UTC).
    "etc/shadow",
)

# The WORKDIR of node-app and python-app is created after the USER company inherited from
# company-base: the owner differs as for busybox (docker/cli#3346). Pinned: (uid, gid) per builder.
EXAMPLE_DIVERGENCES: dict[str, dict[str, dict[str, tuple[int, int]]]] = {
    name: {"home/company/app": {"buildkit": (10000, 10000), "classic": (0, 0)}} for name in ("node-app", "python-app")
}


def volatile(path: str) -> bool:
    return any(path == v or path.startswith(v + "/") for v in VOLATILE_CONTENT)


def examples_workspace(root: Path, p: str, nonce: str, tarballs: list[Path]) -> ScratchWorkspace:
    """A copy of BUILD.examples with repositories ``<p>-*``, labelled ``TEST_LABEL=<p>``; its rootfs
    tarball linked in from the first of ``tarballs`` that exists (the script runs when none does)."""
    ws = ScratchWorkspace(root=root / "ws", cache_dir=root / "cache")
    examples_copy(ws.root, f"{p}-", nonce, rootfs=True, srcs_glob=True)
    node = f"{EXAMPLES_ROOTFS} linux/amd64"
    tarballs.insert(0, ROOT / "cache/rootfs" / f"{ws.keys(EXAMPLES_ROOTFS)[node]}.tar")
    build = ws.path("rootfs/BUILD")
    text = build.read_text()
    labelled = text.replace('tags = ["bookworm"],', f'tags = ["bookworm"],\n    labels = {{"{TEST_LABEL}": "{p}"}},')
    assert labelled != text, text
    build.write_text(labelled)
    source = next((tarball for tarball in tarballs if tarball.is_file()), None)
    if source is not None:
        (ws.cache_dir / "rootfs").mkdir(parents=True)
        link_or_copy(str(source), str(ws.cache_dir / "rootfs" / f"{ws.keys(EXAMPLES_ROOTFS)[node]}.tar"))
    return ws


def context_hashes(ws: ScratchWorkspace, labels: list[str]) -> dict[str, str]:
    """sha256 -> workspace path of every file ``explain`` gives as a context input of ``labels``."""
    hashes = {}
    for label in labels:
        result = ws.run("explain", label, "-o", "json")
        assert result.exit_code == 0, result.output
        (node,) = json.loads(result.stdout)
        package = label.removeprefix("//").split(":")[0]
        for entry in node["inputs"]["entries"]:
            path = ws.path(f"{package}/{entry['path']}")
            if path.is_file():
                hashes[hashlib.sha256(path.read_bytes()).hexdigest()] = f"{package}/{entry['path']}"
    return hashes


def test_buildkit_and_classic_build_the_examples_alike(prefix: str, docker_api: Any, tmp_path: Path) -> None:
    nonce = uuid.uuid4().hex
    built: dict[str, dict[str, dict[str, Any]]] = {}
    workspaces: dict[str, ScratchWorkspace] = {}
    tarballs: list[Path] = []
    for executor in EXECUTORS:
        p = f"{prefix}-{executor}"
        ws = examples_workspace(tmp_path / executor, p, nonce, tarballs)
        report_path = tmp_path / f"{executor}.json"
        result = ws.run("build", "//...", "--executor", executor, "--report", str(report_path))
        assert result.exit_code == 0, result.output
        tarballs.extend((ws.cache_dir / "rootfs").glob("*.tar"))  # the next copy's, if none was in cache/
        report = json.loads(report_path.read_text())
        assert report["executor"]["requested"] == report["executor"]["used"] == executor
        # Keyed by the target's name without the prefix: "company-base", ..., "debian-bookworm".
        nodes = {n["label"].split(":")[1].removeprefix(f"{p}-"): n for n in report["nodes"]}
        assert sorted(nodes) == sorted([*EXAMPLE_COPIES, "debian-bookworm"])
        for node in nodes.values():
            assert (node["platform"], node["status"], node["executor"]) == ("linux/amd64", "built", executor), node
        built[executor] = nodes
        workspaces[executor] = ws

    ws = workspaces["buildkit"]
    contexts = context_hashes(ws, [n["label"] for name, n in built["buildkit"].items() if name in EXAMPLE_COPIES])
    assert len(contexts) >= 6, contexts  # .npmrc, pip.conf, package.json, server.js, main.py, main.c, ...
    files: dict[str, dict[str, Entry]] = {}  # per image, what the comparison saw (of the BuildKit image)
    for name in EXAMPLE_COPIES:
        images = {executor: built[executor][name]["image_id"] for executor in EXECUTORS}
        assert images["buildkit"] != images["classic"], name  # two builds, not one image found twice
        systems = {executor: filesystem(docker_api, image, (TEST_LABEL, prefix)) for executor, image in images.items()}
        for path, owners in EXAMPLE_DIVERGENCES.get(name, {}).items():  # each pinned: still as documented
            found = {executor: systems[executor].pop(path)[2:4] for executor in EXECUTORS}
            assert found == owners, (name, path, found)

        # (1) The files of the build contexts: where the Dockerfiles COPY them, the same in every way.
        copies = {
            executor: {path: entry for path, entry in system.items() if entry[0] == "file" and entry[4] in contexts}
            for executor, system in systems.items()
        }
        assert set(copies["buildkit"]) == EXAMPLE_COPIES[name], (name, sorted(copies["buildkit"]))
        differences = diff(copies["buildkit"], copies["classic"], EXECUTORS)
        assert not differences, f"{name}, files of the build contexts:\n" + "\n".join(differences)

        # (2) and (3): every path, its type, mode, owner and link target; file contents but VOLATILE_CONTENT's.
        status = {executor: system.get("var/lib/dpkg/status") for executor, system in systems.items()}
        assert status["buildkit"] == status["classic"], f"{name}: the two builds installed other package versions"
        stable = {
            executor: {path: (*entry[:4], "") if volatile(path) else entry for path, entry in system.items()}
            for executor, system in systems.items()
        }
        differences = diff(stable["buildkit"], stable["classic"], EXECUTORS)
        assert not differences, f"{name}:\n" + "\n".join(differences[:50])

        configs = {executor: docker_api.inspect_image(image)["Config"] for executor, image in images.items()}
        runs = {executor: run_config(config) for executor, config in configs.items()}
        assert runs["buildkit"] == runs["classic"], name
        files[name] = systems["buildkit"]

    # The comparison saw what the family is made of (else an empty export would pass).
    assert files["company-base"]["etc/ssl/certs/ca-certificates.crt"][0] == "file"
    assert files["company-base"]["root"][1] == 0o700 and files["company-base"]["home/company"][2:4] == (10000, 10000)
    assert files["company-node-base"]["home/company/.npmrc"][2:4] == (10000, 10000)  # COPY, then chown
    assert files["company-python-base"]["etc/pip.conf"][1:4] == (0o644, 0, 0)
    assert "usr/bin/node" in files["node-app"] and files["python-app"]["usr/bin/python3"][0] == "symlink"
    assert sum(volatile(path) for path in files["node-app"]) > 5
    assert files["static-hello"]["app"][1] == 0o755 and "bin" not in files["static-hello"]  # on scratch
    assert files["secure-hello"]["tmp"][1] == 0o1777 and "bin" not in files["secure-hello"]
