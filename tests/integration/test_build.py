"""``orchestrator build`` on the real Docker Engine, with small busybox-based families."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.invariants import assert_invariants
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration


class Family:
    """A four-image family: base -> mid -> leaf, and an independent ``other``; unique repositories."""

    def __init__(self, ws: ScratchWorkspace, busybox: str) -> None:
        self.ws = ws
        self.prefix = f"ot-{uuid.uuid4().hex[:8]}"
        p = self.prefix
        ws.write(
            {
                "WORKSPACE": "",
                "base/BUILD": f'image(name = "base", repository = "{p}-base")\n',
                "base/Dockerfile": f"FROM {busybox}\nCOPY motd /etc/motd\nRUN echo base > /base.txt\n",
                "base/motd": "hello\n",
                "mid/BUILD": f'image(name = "mid", repository = "{p}-mid", tags = ["latest", "1.0"])\n',
                "mid/Dockerfile": f"FROM {p}-base:latest\nRUN cat /base.txt > /mid.txt\n",
                "leaf/BUILD": f'image(name = "leaf", repository = "{p}-leaf")\n',
                "leaf/Dockerfile": f"FROM {p}-mid AS build\nCOPY app.txt /app.txt\nFROM build\nRUN cat /app.txt\n",
                "leaf/app.txt": "app v1\n",
                "other/BUILD": f'image(name = "other", repository = "{p}-other")\n',
                "other/Dockerfile": f"FROM {busybox}\nCOPY x /x\n",
                "other/x": "x\n",
            }
        )

    def build(self, *args: str) -> tuple[int, dict[str, Any]]:
        report = self.ws.root.parent / f"report-{uuid.uuid4().hex[:6]}.json"
        result = self.ws.run("build", "--report", str(report), *args)
        data = json.loads(report.read_text()) if report.exists() else {}
        return result.exit_code, data


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {node["label"]: node["status"] for node in report["nodes"]}


@pytest.fixture
def family(workspace: ScratchWorkspace, busybox_image: str) -> Iterator[Family]:
    fam = Family(workspace, busybox_image)
    yield fam
    client = docker.APIClient()
    for image in client.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(fam.prefix):
                client.remove_image(tag, force=True)


def test_family_builds_from_nothing_then_nothing_to_do(family: Family) -> None:
    code, report = family.build()
    assert code == 0, report
    assert set(statuses(report).values()) == {"built"}
    client = docker.APIClient()
    base = client.inspect_image(f"{family.prefix}-base:latest")
    mid = client.inspect_image(f"{family.prefix}-mid:1.0")
    leaf = client.inspect_image(f"{family.prefix}-leaf:latest")
    # children really contain their parents' layers
    assert mid["RootFS"]["Layers"][: len(base["RootFS"]["Layers"])] == base["RootFS"]["Layers"]
    assert leaf["RootFS"]["Layers"][: len(mid["RootFS"]["Layers"])] == mid["RootFS"]["Layers"]
    labels = leaf["Config"]["Labels"]
    keys = {n["label"]: n["key"] for n in report["nodes"]}
    assert labels["org.orchestrator.key"] == keys["//leaf:leaf"]
    assert labels["org.opencontainers.image.base.name"] == f"{family.prefix}-mid"
    assert labels["org.opencontainers.image.base.digest"] == mid["Id"]

    code, again = family.build()
    assert code == 0
    assert set(statuses(again).values()) == {"cached"}


def test_changed_leaf_rebuilds_only_the_leaf(family: Family) -> None:
    assert family.build()[0] == 0
    family.ws.write({"leaf/app.txt": "app v2\n"})
    code, report = family.build()
    assert code == 0
    assert statuses(report) == {
        "//base:base": "cached",
        "//mid:mid": "cached",
        "//leaf:leaf": "built",
        "//other:other": "cached",
    }


def test_changed_base_rebuilds_base_and_descendants_in_order(family: Family) -> None:
    assert family.build()[0] == 0
    family.ws.write({"base/motd": "hello again\n"})
    code, report = family.build("--jobs", "1")
    assert code == 0
    built = [n["label"] for n in report["nodes"] if n["status"] == "built"]
    assert built == ["//base:base", "//mid:mid", "//leaf:leaf"]
    assert statuses(report)["//other:other"] == "cached"


def test_failure_skips_dependents_builds_independent_and_keeps_tags(family: Family) -> None:
    assert family.build()[0] == 0
    client = docker.APIClient()
    mid_before = client.inspect_image(f"{family.prefix}-mid:latest")["Id"]
    family.ws.write(
        {
            "mid/Dockerfile": f"FROM {family.prefix}-base:latest\nRUN echo about to fail && false\n",
            "other/x": "y\n",
        }
    )
    code, report = family.build()
    assert code == 1
    assert statuses(report) == {
        "//base:base": "cached",
        "//mid:mid": "failed",
        "//leaf:leaf": "skipped",
        "//other:other": "built",
    }
    failed = next(n for n in report["nodes"] if n["label"] == "//mid:mid")
    assert "about to fail" in Path(failed["log"]).read_text()
    assert client.inspect_image(f"{family.prefix}-mid:latest")["Id"] == mid_before  # human tag unmoved
    code, report = family.build("//mid")
    assert code == 1  # no record was written for the failed key: it is tried again
    assert statuses(report)["//mid:mid"] == "failed"


def test_image_removed_behind_our_back_is_rebuilt(family: Family) -> None:
    code, report = family.build()
    assert code == 0
    leaf = next(n for n in report["nodes"] if n["label"] == "//leaf:leaf")
    client = docker.APIClient()
    client.remove_image(leaf["tags"][0], force=True)
    client.remove_image(f"{family.prefix}-leaf:latest", force=True)
    code, report = family.build()
    assert code == 0
    assert statuses(report)["//leaf:leaf"] == "built"
    assert statuses(report)["//mid:mid"] == "cached"


def _cli(ws: ScratchWorkspace, *args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "--workspace", str(ws.root), "--cache-dir", str(ws.cache_dir), *args]


def test_two_builds_at_once_build_each_key_once(family: Family) -> None:
    reports = [family.ws.root.parent / f"r{i}.json" for i in range(2)]
    processes = [
        subprocess.Popen(_cli(family.ws, "build", "--report", str(r)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for r in reports
    ]
    for process in processes:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, out.decode()
    built = [node["label"] for r in reports for node in json.loads(r.read_text())["nodes"] if node["status"] == "built"]
    assert sorted(built) == ["//base:base", "//leaf:leaf", "//mid:mid", "//other:other"]


def test_kill_9_mid_build_then_build_converges(family: Family) -> None:
    family.ws.write({"mid/Dockerfile": f"FROM {family.prefix}-base:latest\nRUN sleep 5 && cat /base.txt > /mid.txt\n"})
    client = docker.APIClient()
    containers_before = len(client.containers(all=True))
    process = subprocess.Popen(
        _cli(family.ws, "build", "--jobs", "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(client.containers(all=True)) == containers_before:
        time.sleep(0.2)  # wait until the slow RUN step has a container
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    code, report = family.build()
    assert code == 0, report
    assert set(statuses(report).values()) <= {"built", "cached"}
    assert_invariants(family.ws.cache_dir, client)
    leaf = client.inspect_image(f"{family.prefix}-leaf:latest")
    assert leaf["Config"]["Labels"]["org.orchestrator.key"] == statuses_key(report, "//leaf:leaf")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(client.containers(all=True)) > containers_before:
        time.sleep(0.5)  # the daemon removes the killed build's container once it notices
    assert len(client.containers(all=True)) == containers_before


def statuses_key(report: dict[str, Any], label: str) -> str:
    return str(next(n["key"] for n in report["nodes"] if n["label"] == label))


def test_daemon_unreachable_is_one_clear_error(workspace: ScratchWorkspace) -> None:
    workspace.write({"a/BUILD": 'image(name = "a")\n', "a/Dockerfile": "FROM scratch\nCOPY BUILD /\n"})
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = subprocess.run(_cli(workspace, "build"), env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("ERROR ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_cleanly_and_records_nothing(family: Family, signum: int, exit_code: int) -> None:
    family.ws.write({"mid/Dockerfile": f"FROM {family.prefix}-base:latest\nRUN sleep 20\n"})
    client = docker.APIClient()
    containers_before = len(client.containers(all=True))
    process = subprocess.Popen(
        _cli(family.ws, "build", "--jobs", "1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(client.containers(all=True)) == containers_before:
        time.sleep(0.2)
    started = time.monotonic()
    process.send_signal(signum)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == exit_code, out.decode()
    assert time.monotonic() - started < 15  # the running build was stopped, not waited for
    dry = family.ws.run("build", "--dry-run", "//mid")
    assert "BUILD  //mid:mid" in dry.stdout  # nothing recorded for the interrupted node
    assert_invariants(family.ws.cache_dir, client)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(client.containers(all=True)) > containers_before:
        time.sleep(0.5)
    assert len(client.containers(all=True)) == containers_before


def test_since_builds_exactly_the_changed_target_and_its_descendants(family: Family) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-C", str(family.ws.root), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "family")
    assert family.build()[0] == 0
    family.ws.write({"mid/Dockerfile": f"FROM {family.prefix}-base:latest\nRUN cat /base.txt /base.txt > /mid.txt\n"})
    git("commit", "-q", "-am", "mid changed")
    affected = family.ws.lines("query", "affected", "--since", "HEAD~1")
    assert affected == ["//leaf:leaf", "//mid:mid"]
    code, report = family.build("--since", "HEAD~1")
    assert code == 0, report
    assert statuses(report) == {"//base:base": "cached", "//mid:mid": "built", "//leaf:leaf": "built"}
