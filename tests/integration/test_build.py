"""``orchestrator build`` on the real Docker Engine, with small busybox-based families."""

from __future__ import annotations

import contextlib
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

EXECUTORS = ["buildkit", "classic"]  # the tests of the family's invariants run on both builders


class Family:
    """A four-image family: base -> mid -> leaf, and an independent ``other``; unique repositories.

    ``executor`` goes in the WORKSPACE (``workspace(executor = ...)``): every build of the family,
    in-process or a child CLI, uses that builder.
    """

    def __init__(self, ws: ScratchWorkspace, busybox: str, executor: str = "auto") -> None:
        self.ws = ws
        self.prefix = f"ot-{uuid.uuid4().hex[:8]}"
        p = self.prefix
        ws.write(
            {
                "WORKSPACE": f'workspace(executor = "{executor}")\n',
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
def executor() -> str:
    """The builder of ``family`` (a test parametrizes ``executor`` to run on each)."""
    return "auto"


@pytest.fixture
def family(workspace: ScratchWorkspace, busybox_image: str, executor: str) -> Iterator[Family]:
    fam = Family(workspace, busybox_image, executor)
    yield fam
    client = docker.APIClient()
    for image in client.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(fam.prefix):
                client.remove_image(tag, force=True)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_family_builds_from_nothing_then_nothing_to_do(family: Family, executor: str) -> None:
    code, report = family.build()
    assert code == 0, report
    assert report["executor"]["used"] == executor, report["executor"]
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


@pytest.mark.parametrize("executor", EXECUTORS)
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
    with contextlib.ExitStack() as stack:  # each pipe closed, each process waited for, even after a failure
        processes = [
            stack.enter_context(
                subprocess.Popen(
                    _cli(family.ws, "build", "--report", str(r)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
            for r in reports
        ]
        outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, out in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out.decode()
    built = [node["label"] for r in reports for node in json.loads(r.read_text())["nodes"] if node["status"] == "built"]
    assert sorted(built) == ["//base:base", "//leaf:leaf", "//mid:mid", "//other:other"]


def _slow_run(token: str, seconds: int) -> str:
    """A RUN step that prints ``<token>-started`` (its command line does not hold that text), then sleeps.

    The token keeps the engine's layer cache (BuildKit's too) from skipping it.
    """
    return f"RUN printf '%s-started\\n' {token} && sleep {seconds}"


def _wait_until_running(family: Family, node: str, token: str, process: subprocess.Popen[bytes]) -> None:
    """Until the RUN step of ``_slow_run(token, ...)`` prints, in the build log of ``node`` (e.g. ``mid__mid``).

    Either builder writes a RUN step's output to the node's log as it comes.
    """
    logs = family.ws.cache_dir / "logs" / node
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if any(f"{token}-started" in log.read_text(errors="replace") for log in logs.glob("*.log")):
            return
        time.sleep(0.1)
    pytest.fail(f"the RUN step of {node} never started (the build exited {process.poll()})")


def _step_containers(client: Any, token: str) -> list[str]:
    """The containers whose command holds ``token``: the classic builder's step containers of that RUN."""
    return [c["Id"] for c in client.containers(all=True) if token in (c.get("Command") or "")]


def _wait_until_gone(client: Any, token: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _step_containers(client, token):
        time.sleep(0.5)  # the daemon removes a stopped build's container once it notices
    assert _step_containers(client, token) == []


@pytest.mark.parametrize("executor", EXECUTORS)
def test_kill_9_mid_build_then_build_converges(family: Family) -> None:
    token = uuid.uuid4().hex
    mid = f"FROM {family.prefix}-base:latest\n{_slow_run(token, 5)} && cat /base.txt > /mid.txt\n"
    family.ws.write({"mid/Dockerfile": mid})
    client = docker.APIClient()
    with subprocess.Popen(
        _cli(family.ws, "build", "--jobs", "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as process:
        try:
            _wait_until_running(family, "mid__mid", token, process)
        finally:
            os.kill(process.pid, signal.SIGKILL)
    code, report = family.build()
    assert code == 0, report
    assert set(statuses(report).values()) <= {"built", "cached"}
    assert_invariants(family.ws.cache_dir, client)
    leaf = client.inspect_image(f"{family.prefix}-leaf:latest")
    assert leaf["Config"]["Labels"]["org.orchestrator.key"] == statuses_key(report, "//leaf:leaf")
    _wait_until_gone(client, token)


def statuses_key(report: dict[str, Any], label: str) -> str:
    return str(next(n["key"] for n in report["nodes"] if n["label"] == label))


def test_daemon_unreachable_is_one_clear_error(workspace: ScratchWorkspace) -> None:
    workspace.write({"a/BUILD": 'image(name = "a")\n', "a/Dockerfile": "FROM scratch\nCOPY BUILD /\n"})
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = subprocess.run(_cli(workspace, "build"), env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("ERROR ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_cleanly_and_records_nothing(family: Family, signum: int, exit_code: int) -> None:
    token = uuid.uuid4().hex
    family.ws.write({"mid/Dockerfile": f"FROM {family.prefix}-base:latest\n{_slow_run(token, 20)}\n"})
    client = docker.APIClient()
    with subprocess.Popen(
        _cli(family.ws, "build", "--jobs", "1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as process:
        try:
            _wait_until_running(family, "mid__mid", token, process)
            started = time.monotonic()
            process.send_signal(signum)
            out, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == exit_code, out.decode()
    assert time.monotonic() - started < 15  # the running build was stopped, not waited for
    dry = family.ws.run("build", "--dry-run", "//mid")
    assert "BUILD  //mid:mid" in dry.stdout  # nothing recorded for the interrupted node
    assert_invariants(family.ws.cache_dir, client)
    tagged = {tag for image in client.images() for tag in image.get("RepoTags") or [] if tag.startswith(family.prefix)}
    assert not {f"{family.prefix}-mid:latest", f"{family.prefix}-leaf:latest"} & tagged  # no human tag moved
    _wait_until_gone(client, token)


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
