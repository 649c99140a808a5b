"""A key names exactly one image: racing edits, removed content tags and --no-cache (issue: step 6).

The races are timed with a slow parent: its ``RUN sleep`` holds the child back after every key was
computed, and the test edits the child's inputs during that window. Whatever happens to that build,
every image a record or a content tag names afterwards holds the content of its key.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.invariants import assert_invariants, records
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

SLOW_S = 6  # the parent's RUN step: the window in which the child's inputs are edited


class SlowFamily:
    """``slow`` (a parent whose build takes SLOW_S seconds) and ``child`` built on it."""

    def __init__(
        self,
        ws: ScratchWorkspace,
        busybox: str,
        *,
        child_files: dict[str, str],
        child_build: str,
        executor: str = "auto",
    ) -> None:
        self.ws = ws
        self.prefix = f"ot-{uuid.uuid4().hex[:8]}"
        p = self.prefix
        ws.write(
            {
                "WORKSPACE": f'workspace(executor = "{executor}")\n',
                "slow/BUILD": f'image(name = "slow", repository = "{p}-slow")\n',
                # The unique token keeps the engine's layer cache from making the parent fast.
                "slow/Dockerfile": f"FROM {busybox}\nRUN sleep {SLOW_S} && echo {p} > /slow.txt\n",
                "child/BUILD": child_build.format(p=p),
                **child_files,
            }
        )

    def build(self, *args: str) -> tuple[int, dict[str, Any], str]:
        return build(self.ws, *args)

    @contextmanager
    def started_build(self) -> Iterator[subprocess.Popen[str]]:
        """A build in a child process; killed if still running when the block ends (a failed test), its pipe closed."""
        with subprocess.Popen(
            cli(self.ws, "build"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            try:
                yield process
            finally:
                if process.poll() is None:
                    process.kill()

    def wait_until_slow_builds(self) -> None:
        """Until the parent's build has started (every key is computed by then)."""
        logs = self.ws.cache_dir / "logs" / "slow__slow"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if logs.is_dir() and any(logs.iterdir()):
                time.sleep(1.0)  # well into the RUN step
                return
            time.sleep(0.1)
        pytest.fail("the slow parent never started building")

    def key(self, label: str) -> str:
        (line,) = self.ws.lines("hash", label)
        return line.split()[2]


def forget_build_cache(api: Any, token: str) -> None:
    """Remove BuildKit's cache of every step whose description holds ``token``, and of the steps on top of it.

    BuildKit keeps its own cache of each step's result, which removing the image leaves: without this,
    a step built before would be served from it at once. (The classic builder's cache is the images.)
    """
    records = api.df().get("BuildCache") or []
    doomed = {r["ID"] for r in records if token in (r.get("Description") or "")}
    while True:  # and every record on top of one of those
        more = {r["ID"] for r in records if r.get("Parent") in doomed} - doomed
        if not more:
            break
        doomed |= more
    parents = {r["ID"]: r.get("Parent") for r in records}
    depth = {}
    for record_id in doomed:
        n, parent = 0, parents.get(record_id)
        while parent in doomed:
            n, parent = n + 1, parents.get(parent)
        depth[record_id] = n
    for record_id in sorted(doomed, key=depth.__getitem__, reverse=True):  # children before their parents
        api.prune_builds(filters={"id": record_id})
    left = {r["ID"] for r in api.df().get("BuildCache") or []} & doomed
    assert not left, f"BuildKit kept the cache records {sorted(left)}"


def cli(ws: ScratchWorkspace, *args: str) -> list[str]:
    root, cache = str(ws.root), str(ws.cache_dir)
    return [sys.executable, "-m", "orchestrator", "--workspace", root, "--cache-dir", cache, *args]


def build(ws: ScratchWorkspace, *args: str) -> tuple[int, dict[str, Any], str]:
    """``orchestrator build`` in a subprocess: its exit code, its report and its stderr."""
    report = ws.root.parent / f"report-{uuid.uuid4().hex[:6]}.json"
    done = subprocess.run(cli(ws, "build", "--report", str(report), *args), capture_output=True, text=True)
    data = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, data, done.stderr


@pytest.fixture
def cleanup_prefix() -> Iterator[list[str]]:
    prefixes: list[str] = []
    yield prefixes
    client = docker.APIClient()
    for image in client.images():
        for tag in image.get("RepoTags") or []:
            if any(tag.startswith(p) for p in prefixes):
                client.remove_image(tag, force=True)


@pytest.fixture
def prefix(cleanup_prefix: list[str]) -> str:
    """A unique repository prefix; its images are removed afterwards."""
    p = f"ot-{uuid.uuid4().hex[:8]}"
    cleanup_prefix.append(p)
    return p


def file_in(image: str, path: str) -> str:
    client = docker.from_env()
    try:
        return bytes(client.containers.run(image, ["cat", path], remove=True)).decode()
    finally:
        client.close()


def content_of_each_key(family: SlowFamily, label: str, contents: dict[str, str], path: str) -> None:
    """Every record of ``label`` whose content tag exists names an image holding ``contents[key]``."""
    api = docker.APIClient()
    checked = 0
    for record in records(family.ws.cache_dir):
        if record.label != label:
            continue
        try:
            api.inspect_image(record.image)
        except docker.errors.NotFound:
            continue
        assert record.key in contents, f"a record for a key nobody hashed: {record}"
        assert file_in(record.image, path) == contents[record.key], f"{record.image} holds another key's content"
        checked += 1
    assert_invariants(family.ws.cache_dir, api)
    assert checked, f"no image of {label} to check"


def test_dockerfile_outside_context_edited_while_parent_builds(
    workspace: ScratchWorkspace, busybox_image: str, cleanup_prefix: list[str]
) -> None:
    """Issue item 1: the image holds the Dockerfile text its key was computed from, or nothing is built."""
    family = SlowFamily(
        workspace,
        busybox_image,
        child_build='image(name = "child", repository = "{p}-child", context = "ctx")\n',
        child_files={"child/ctx/data.txt": "data\n"},
    )
    cleanup_prefix.append(family.prefix)
    dockerfile = workspace.path("child/Dockerfile")
    dockerfile.write_text(f"FROM {family.prefix}-slow\nRUN echo A > /version.txt\n")
    key_a = family.key("//child")
    with family.started_build() as process:
        family.wait_until_slow_builds()
        dockerfile.write_text(f"FROM {family.prefix}-slow\nRUN echo B > /version.txt\n")  # same size
        out, _ = process.communicate(timeout=120)
    key_b = family.key("//child")
    assert key_a != key_b
    assert process.returncode == 1, out
    assert "an input changed" in out
    assert "Traceback" not in out
    # The next build converges on the new text, and each key's image holds its own text.
    code, report, err = family.build()
    assert code == 0, err
    child = next(n for n in report["nodes"] if n["label"] == "//child:child")
    assert (child["status"], child["key"]) == ("built", key_b)
    content_of_each_key(family, "//child:child", {key_a: "A\n", key_b: "B\n"}, "/version.txt")


@pytest.mark.parametrize("executor", ["buildkit", "classic"])
def test_same_size_context_edit_of_a_node_whose_content_tag_was_removed(
    workspace: ScratchWorkspace, busybox_image: str, cleanup_prefix: list[str], executor: str
) -> None:
    """Issue item 2: a failed build leaves no content tag, and an old record never trusts a wrong image."""
    family = SlowFamily(
        workspace,
        busybox_image,
        child_build='image(name = "child", repository = "{p}-child")\n',
        child_files={"child/Dockerfile": "FROM {p}-slow\nCOPY data.txt /data.txt\n", "child/data.txt": "AAAA\n"},
        executor=executor,
    )
    cleanup_prefix.append(family.prefix)
    workspace.write({"child/Dockerfile": f"FROM {family.prefix}-slow\nCOPY data.txt /data.txt\n"})
    code, _, err = family.build()
    assert code == 0, err
    key_a = family.key("//child")
    # Both images go (their layers too, so the parent is slow again); the records stay.
    api = docker.APIClient()
    for name in ("child", "slow"):
        api.remove_image(api.inspect_image(f"{family.prefix}-{name}:latest")["Id"], force=True)
    forget_build_cache(api, family.prefix)  # BuildKit's copy of those layers
    with family.started_build() as process:
        family.wait_until_slow_builds()
        workspace.write({"child/data.txt": "BBBB\n"})  # the same size
        out, _ = process.communicate(timeout=120)
    assert process.returncode == 1, out
    assert "an input changed" in out
    assert "Traceback" not in out
    with pytest.raises(docker.errors.NotFound):
        api.inspect_image(f"{family.prefix}-child:key-{key_a}")  # the failed build left no content tag
    assert_invariants(workspace.cache_dir, api)
    code, report, err = family.build()
    assert code == 0, err
    key_b = family.key("//child")
    statuses = {n["label"]: (n["status"], n["key"]) for n in report["nodes"]}
    assert statuses["//child:child"] == ("built", key_b)
    content_of_each_key(family, "//child:child", {key_a: "AAAA\n", key_b: "BBBB\n"}, "/data.txt")


def test_no_cache_builds_the_selected_nodes_again_and_not_their_parents(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str
) -> None:
    """Issue item 3: --no-cache builds every selected node, without the engine's layer cache."""
    p = prefix
    workspace.write(
        {
            "base/BUILD": f'image(name = "base", repository = "{p}-base")\n',
            "base/Dockerfile": f"FROM {busybox_image}\nRUN echo base > /base.txt\n",
            "app/BUILD": f'image(name = "app", repository = "{p}-app")\n',
            "app/Dockerfile": f"FROM {p}-base\nRUN echo app > /app.txt\n",
        }
    )
    code, _, err = build(workspace)
    assert code == 0, err
    api = docker.APIClient()
    first = api.inspect_image(f"{p}-app:latest")["Id"]
    code, report, err = build(workspace, "--no-cache", "//app")
    assert code == 0, err
    assert {n["label"]: n["status"] for n in report["nodes"]} == {"//base:base": "cached", "//app:app": "built"}
    assert "built" in err.splitlines()[-1] or "1 built" in err
    log = Path(next(n["log"] for n in report["nodes"] if n["label"] == "//app:app")).read_text()
    assert "Using cache" not in log  # the engine's layer cache was not used
    assert api.inspect_image(f"{p}-app:latest")["Id"] != first  # a new image (a new created time)
    # Another --no-cache run builds it again too: the record written in between is not reused.
    code, report, err = build(workspace, "--no-cache", "//app")
    assert code == 0, err
    assert {n["label"]: n["status"] for n in report["nodes"]}["//app:app"] == "built"
    assert_invariants(workspace.cache_dir, api)


def test_a_local_base_of_another_architecture_fails_the_node_and_tags_nothing(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str
) -> None:
    """The host's busybox is amd64 only: an arm64 node on it is refused when planning, never built or tagged."""
    p = prefix
    workspace.write(
        {
            "app/BUILD": f'image(name = "app", repository = "{p}-app", platforms = ["linux/arm64"])\n',
            "app/Dockerfile": f"FROM {busybox_image}\nRUN echo {p} > /app.txt\n",
        }
    )
    code, report, err = build(workspace)
    # Found when planning, before anything is built (step 9); the executor's own check after a
    # build ("platform is linux/amd64, expected linux/arm64") stays as the last line of defence.
    assert code == 2, err
    assert f"the engine's {busybox_image} is for linux/amd64, not linux/arm64" in err
    assert "Traceback" not in err
    assert report == {}  # nothing ran
    api = docker.APIClient()
    assert not [t for i in api.images() for t in i.get("RepoTags") or () if t.startswith(p)]
    assert records(workspace.cache_dir) == []
    assert_invariants(workspace.cache_dir, api, [f"{p}-app"])
