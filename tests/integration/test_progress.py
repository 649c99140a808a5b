"""What ``orchestrator build`` prints without a terminal (CI logs) while it works, on the real engine:
a heartbeat line at least every 30 s through a quiet step, and a line as each push starts and ends.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

QUIET_S = 45  # the case: a step that prints nothing for 45 s
PROMISED_GAP_S = 30.0


@pytest.fixture
def prefix() -> Iterator[str]:
    """A repository prefix of this test's own; its images are removed afterwards."""
    prefix = f"ot-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = docker.APIClient()
    for image in client.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix) or f"/{prefix}" in tag:
                client.remove_image(tag, force=True)
    client.close()


def run_timed(
    ws: ScratchWorkspace, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[int, list[tuple[float, str]]]:
    """Run the CLI as a child process with pipes (no terminal): its exit code and each output line with
    the second it arrived."""
    command = [sys.executable, "-m", "orchestrator", "--workspace", str(ws.root), "--cache-dir", str(ws.cache_dir)]
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    ) as process:
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append((time.monotonic(), line.rstrip("\n")))
            code = process.wait()
        finally:
            timer.cancel()
    return code, lines


def write_slow(ws: ScratchWorkspace, busybox: str, prefix: str, seconds: int) -> None:
    ws.write(
        {
            "WORKSPACE": "",
            "slow/BUILD": f'image(name = "slow", repository = "{prefix}-slow")\n',
            # A fresh comment-free instruction each time, so the engine's layer cache cannot skip it.
            "slow/Dockerfile": f"FROM {busybox}\nRUN echo {uuid.uuid4().hex} > /id && sleep {seconds}\n",
        }
    )


# How each builder names the step it is on: "Step 2/3 : RUN ..." (classic), "[2/2] RUN ..." (BuildKit).
STEP_WORDING = {"classic": r"Step \d+/\d+ : RUN ", "buildkit": r"\[\d+/\d+\] RUN "}


@pytest.mark.parametrize("executor", sorted(STEP_WORDING))
def test_a_quiet_45_second_step_prints_a_progress_line_at_least_every_30_seconds(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str, executor: str
) -> None:
    write_slow(workspace, busybox_image, prefix, QUIET_S)
    # COLUMNS: a long step still fits one line
    code, lines = run_timed(workspace, "build", "--executor", executor, env={"COLUMNS": "60"})
    text = "\n".join(line for _, line in lines)
    assert code == 0, text
    started = next(i for i, (_, line) in enumerate(lines) if line.startswith("START //slow:slow"))
    finished = next(i for i, (_, line) in enumerate(lines) if line.startswith("BUILT   //slow:slow"))
    during = lines[started : finished + 1]
    assert during[-1][0] - during[0][0] >= QUIET_S
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(during)]
    assert max(gaps) <= PROMISED_GAP_S, text
    beats = [line for _, line in during if line.startswith("BUILDING //slow:slow")]
    assert beats, text
    assert f"sleep {QUIET_S}" in beats[0] and re.search(STEP_WORDING[executor], beats[0]), beats  # the step it is on
    assert "\x1b" not in text  # no escape sequences in a CI log


def test_pushes_to_the_registry_cache_print_when_they_start_and_end(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str, registry: str
) -> None:
    write_slow(workspace, busybox_image, prefix, 0)
    code, lines = run_timed(workspace, "build", "--registry", registry)
    text = "\n".join(line for _, line in lines)
    assert code == 0, text
    said = [line for _, line in lines]
    start = [i for i, line in enumerate(said) if line.startswith("PUSH    //slow:slow ")]
    end = [i for i, line in enumerate(said) if line.startswith("PUSHED  //slow:slow ")]
    assert len(start) == 1 and len(end) == 1 and start[0] < end[0], text
    assert said[start[0]].endswith(" to the registry cache"), text
