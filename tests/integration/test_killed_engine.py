"""dockerd killed with -9 mid-build (issue 10, item 8): the next build removes the step container left.

The classic builder's step container survives a killed dockerd (stopped, after the restart); the
build that made it recorded it in its journal (executor/leftovers.py), and the next build removes it,
and nothing else. The builds here use the classic builder (``--executor classic``): BuildKit runs its
steps in no engine container, so there is no step container to leave.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engines import PrivateEngine
from tests.integration.conftest import BUSYBOX_IMAGE
from tests.invariants import assert_invariants
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

WAIT_S = 60.0
# A long silent step. Its PID 1 ends on SIGTERM, so that the restarted dockerd stops the container it
# finds running at once (a bare `sleep 30` ignores SIGTERM as PID 1: 10 s more per restart).
SLOW = f"FROM {BUSYBOX_IMAGE}\nRUN trap 'exit 1' TERM; sleep 30 & wait\n"
QUICK = f"FROM {BUSYBOX_IMAGE}\nRUN echo done > /done\n"


def test_the_build_after_a_killed_engine_removes_the_step_container_it_left(
    workspace: ScratchWorkspace, private_engine: PrivateEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.write({"app/BUILD": 'image(name = "app", repository = "killed-app")\n', "app/Dockerfile": SLOW})
    bystander = _bystander_container(private_engine)
    before = private_engine.container_ids()
    journal = workspace.cache_dir / "build-containers"

    cli = [sys.executable, "-m", "orchestrator", "--cache-dir", str(workspace.cache_dir)]
    with subprocess.Popen(  # its own process: it must be over (and its pid dead) for the sweep
        # The classic builder's: BuildKit makes no step containers (its RUNs are not engine containers).
        [*cli, "--workspace", str(workspace.root), "build", "--executor", "classic"],
        env={**os.environ, "DOCKER_HOST": private_engine.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as first:
        try:
            step = _wait_for_journalled_step(private_engine, journal, before)
            private_engine.kill9()
            output, _ = first.communicate(timeout=WAIT_S)
        finally:
            if first.poll() is None:
                first.kill()
    assert first.returncode == 1, output
    assert "broke during the build" in output

    private_engine.restart()
    assert step in private_engine.container_ids()  # the engine kept the step container: the defect

    monkeypatch.setenv("DOCKER_HOST", private_engine.url)
    workspace.write({"app/Dockerfile": QUICK})
    report = workspace.root.parent / "report.json"
    result = workspace.run("build", "--executor", "classic", "--report", str(report))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert private_engine.container_ids() == before  # the step container is gone, the bystander is not
    assert bystander in before
    assert list(journal.iterdir()) == []
    log = Path(json.loads(report.read_text())["nodes"][0]["log"]).read_text()
    assert f"removed the step container {step[:12]}" in log
    api = private_engine.client()
    try:
        assert_invariants(workspace.cache_dir, api)
    finally:
        api.close()


def _bystander_container(engine: PrivateEngine) -> str:
    """A stopped container the orchestrator did not make: it must survive every sweep."""
    client = engine.client()
    try:
        return str(client.create_container(BUSYBOX_IMAGE, ["true"])["Id"])
    finally:
        client.close()


def _wait_for_journalled_step(engine: PrivateEngine, journal: Path, before: set[str]) -> str:
    """The full ID of the build's step container, once it runs and the build's journal names it."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        new = engine.container_ids() - before
        journalled = {line for entry in journal.glob("*.build") for line in entry.read_text().splitlines()[1:]}
        for container_id in new:
            if container_id[:12] in journalled:
                return container_id
        time.sleep(0.1)
    raise AssertionError(f"no step container ran and was journalled within {WAIT_S:.0f} s")


def test_a_sweep_removes_only_ids_never_a_container_named_like_one(
    workspace: ScratchWorkspace, private_engine: PrivateEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = private_engine.client()
    try:
        named = client.create_container(BUSYBOX_IMAGE, ["true"], name="3f2a0b1c4d5e")["Id"]
        step = client.create_container(BUSYBOX_IMAGE, ["true"])["Id"]
    finally:
        client.close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    journal = workspace.cache_dir / "build-containers"
    journal.mkdir(parents=True)
    header = {"pid": dead.pid, "started": "1", "host": socket.gethostname(), "engine": private_engine.url}
    (journal / f"{dead.pid}-0.build").write_text(f"{json.dumps(header)}\n3f2a0b1c4d5e\n{step[:12]}\n")

    monkeypatch.setenv("DOCKER_HOST", private_engine.url)
    workspace.write({"app/BUILD": 'image(name = "app", repository = "sweep-app")\n', "app/Dockerfile": QUICK})
    result = workspace.run("build")
    assert result.exit_code == 0, result.output
    remaining = private_engine.container_ids()
    assert named in remaining  # "3f2a0b1c4d5e" is its name: docker rm would have taken it, the sweep did not
    assert step not in remaining
    assert list(journal.iterdir()) == []
