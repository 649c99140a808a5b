"""A frozen engine (dockerd stopped with SIGSTOP mid-build), or one whose disk is full: one clear line.

The engine is a private one (``private_engine``), so freezing it harms nothing else on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.conftest import BUSYBOX_IMAGE
from tests.invariants import assert_invariants
from tests.workspaces import ScratchWorkspace

if TYPE_CHECKING:
    from tests.engines import PrivateEngine

pytestmark = pytest.mark.integration


def _cli(ws: ScratchWorkspace, engine: PrivateEngine, *args: str) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "orchestrator", "--workspace", str(ws.root), "--cache-dir", str(ws.cache_dir)]
    return [*argv, *args], {**os.environ, "DOCKER_HOST": engine.url}


EXECUTORS = ["buildkit", "classic"]  # a frozen engine is one on either builder


def _write(ws: ScratchWorkspace, repository: str, seconds: int, executor: str) -> None:
    ws.write(
        {
            "WORKSPACE": f'workspace(executor = "{executor}")\n',
            "quiet/BUILD": f'image(name = "quiet", repository = "{repository}")\n',
            # A RUN step that says it started (in the build log: "<repository>-started"; its command line
            # does not hold that text), then prints nothing for its whole length. The repository is unique:
            # no layer cache (BuildKit's either) skips the step.
            "quiet/Dockerfile": (
                f"FROM {BUSYBOX_IMAGE}\nRUN printf '%s-started\\n' {repository} && sleep {seconds}"
                f" && echo {repository} > /done\n"
            ),
        }
    )


def _wait_for_run_step(ws: ScratchWorkspace, repository: str, process: subprocess.Popen[str]) -> None:
    """Until the RUN step runs: its first line is in the node's build log (either builder writes it there)."""
    logs = ws.cache_dir / "logs" / "quiet__quiet"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if any(f"{repository}-started" in log.read_text(errors="replace") for log in logs.glob("*.log")):
            return
        time.sleep(0.1)
    raise AssertionError(f"the build never reached its RUN step (it exited {process.poll()})")


def _freeze_mid_build(
    ws: ScratchWorkspace, engine: PrivateEngine, repository: str, timeout: int
) -> tuple[int, str, float]:
    """Start a build, SIGSTOP the engine once the RUN step runs, wait for the build to end.

    Its exit code, output, and how long after the freeze it ended; the engine is running again afterwards.
    """
    argv, env = _cli(ws, engine, "build", "--engine-timeout", str(timeout))
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        try:
            _wait_for_run_step(ws, repository, process)
            engine.sigstop()
            frozen_at = time.monotonic()
            try:
                out, _ = process.communicate(timeout=60)
                return process.returncode, out, time.monotonic() - frozen_at
            finally:
                engine.sigcont()
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_frozen_engine_fails_the_node_naming_the_engine_and_timeout(
    workspace: ScratchWorkspace, private_engine: PrivateEngine, executor: str
) -> None:
    repository = f"ot-{uuid.uuid4().hex[:8]}"
    _write(workspace, repository, 60, executor)
    code, out, took = _freeze_mid_build(workspace, private_engine, repository, 4)
    assert code == 1, out
    assert "did not answer for 4 s" in out
    assert private_engine.url in out
    assert "Traceback" not in out
    assert 4 <= took < 20, f"the frozen engine was given up after {took:.1f} s"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_quiet_steps_are_not_a_frozen_engine_and_a_later_build_converges(
    workspace: ScratchWorkspace, private_engine: PrivateEngine, executor: str
) -> None:
    repository = f"ot-{uuid.uuid4().hex[:8]}"
    _write(workspace, repository, 60, executor)
    code, out, _ = _freeze_mid_build(workspace, private_engine, repository, 2)
    assert code == 1, out
    # A RUN step silent for three times the engine timeout is fine while the engine answers pings.
    _write(workspace, repository, 6, executor)
    report = workspace.root.parent / "report.json"
    argv, env = _cli(workspace, private_engine, "build", "--engine-timeout", "2", "--report", str(report))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (node,) = json.loads(report.read_text())["nodes"]
    assert node["status"] == "built"
    api = private_engine.client()
    assert api.inspect_image(f"{repository}:latest")["Config"]["Labels"]["org.orchestrator.key"] == node["key"]
    assert_invariants(Path(workspace.cache_dir), api)


def test_full_engine_disk_fails_the_node_with_the_engine_s_words_and_records_nothing(
    workspace: ScratchWorkspace, small_disk_engine: PrivateEngine
) -> None:
    """/var/lib/docker full: the node fails (exit 1) with "no space left on device"; nothing is recorded."""
    repository = f"ot-{uuid.uuid4().hex[:8]}"
    workspace.write(
        {
            "big/BUILD": f'image(name = "big", repository = "{repository}")\n',
            "big/Dockerfile": f"FROM {BUSYBOX_IMAGE}\nRUN dd if=/dev/zero of=/big bs=1M count=200\n",
        }
    )
    report = workspace.root.parent / "report.json"
    argv, env = _cli(workspace, small_disk_engine, "build", "--report", str(report))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "no space left on device" in done.stderr.lower()
    assert "Traceback" not in done.stderr
    (node,) = json.loads(report.read_text())["nodes"]
    assert node["status"] == "failed"
    api = small_disk_engine.client()
    assert not [t for i in api.images() for t in i.get("RepoTags") or () if t.startswith(repository)]
    assert_invariants(Path(workspace.cache_dir), api, [repository])
