"""``orchestrator test`` on the real Docker Engine: image_test() checks on a busybox image and on a
FROM-scratch image without a shell."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import junitparser
import pytest
from typer.testing import Result

from orchestrator.engine.docker_probe import TEST_RUN_LABEL
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

APP_CHECKS = """
    commands = [{"name": "says hi", "command": ["echo", "hi"], "expected_output": ["^hi$"]}],
    files = [
        {"path": "/etc/app.conf", "mode": "0644", "owner": "0:0", "contains": ["^greeting=hi$"]},
        {"path": "/bin/sh", "type": "symlink"},
    ],
    metadata = {"user": "company", "env": {"GREETING": "hi"}, "exposed_ports": ["8080"]},
"""


class Images:
    """An image running as a non-root user, and a FROM-scratch image of one static file and no shell."""

    def __init__(self, ws: ScratchWorkspace, busybox: str) -> None:
        self.ws = ws
        self.prefix = f"ot-test-{uuid.uuid4().hex[:8]}"
        p = self.prefix
        ws.write(
            {
                "WORKSPACE": "",
                "app/BUILD": (
                    f'image(name = "app", repository = "{p}-app")\n'
                    f'image_test(name = "app_test", image = ":app",{APP_CHECKS})\n'
                ),
                "app/Dockerfile": self.app_dockerfile(busybox, user="company"),
                "app/app.conf": "greeting=hi\n",
                "app/passwd": "root:x:0:0:root:/root:/bin/sh\ncompany:x:10000:10000::/home/company:/bin/sh\n",
                "static/BUILD": (
                    f'image(name = "static", repository = "{p}-static")\n'
                    "image_test(\n"
                    '    name = "static_test",\n'
                    f'    image = "{p}-static:latest",\n'
                    '    commands = [{"name": "busybox echo", "command": ["/app/busybox", "echo", "hi"],'
                    ' "expected_output": ["^hi$"]}],\n'
                    '    files = [{"path": "/bin/sh", "exists": False}, {"path": "/app/busybox", "mode": "0755"}],\n'
                    '    metadata = {"entrypoint": ["/app/busybox"]},\n'
                    ")\n"
                ),
                "static/Dockerfile": (
                    f"FROM {p}-app:latest AS busybox\n"
                    "FROM scratch\n"
                    "COPY --from=busybox /bin/busybox /app/busybox\n"
                    'ENTRYPOINT ["/app/busybox"]\n'
                ),
            }
        )
        self.busybox = busybox

    @staticmethod
    def app_dockerfile(busybox: str, *, user: str) -> str:
        return (
            f"FROM {busybox}\nCOPY passwd /etc/passwd\nCOPY app.conf /etc/app.conf\n"
            f"ENV GREETING=hi\nEXPOSE 8080\nUSER {user}\n"
        )

    def test(self, *args: str) -> tuple[Result, junitparser.JUnitXml | None]:
        junit = self.ws.root.parent / f"junit-{uuid.uuid4().hex[:6]}.xml"
        result = self.ws.run("test", "--junit", str(junit), *args)
        return result, junitparser.JUnitXml.fromfile(str(junit)) if junit.exists() else None


@pytest.fixture
def images(workspace: ScratchWorkspace, busybox_image: str, docker_api: Any) -> Iterator[Images]:
    made = Images(workspace, busybox_image)
    yield made
    left = [c for c in _probe_containers(docker_api) if str(c.get("Image", "")).startswith(made.prefix)]
    for container in left:
        docker_api.remove_container(container["Id"], force=True, v=True)
    for image in docker_api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(made.prefix):
                docker_api.remove_image(tag, force=True)
    assert not left, f"containers left behind: {left}"


def _probe_containers(api: Any) -> list[dict[str, Any]]:
    return list(api.containers(all=True, filters={"label": f"{TEST_RUN_LABEL}=1"}))


def _created_probe_containers(api: Any, since: float) -> int:
    """How many containers carrying the probe's label the engine created since ``since``."""
    events = api.events(
        since=since,
        until=time.time(),
        filters={"type": "container", "event": "create", "label": f"{TEST_RUN_LABEL}=1"},
        decode=True,
    )
    return sum(1 for _ in events)


def _lines(result: Result, word: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(word + " ")]


def test_checks_pass_write_junit_and_are_cached_the_second_time(images: Images, docker_api: Any) -> None:
    started = time.time()
    result, junit = images.test()
    assert result.exit_code == 0, result.output
    assert junit is not None
    assert (junit.tests, junit.failures, junit.errors) == (12, 0, 0)  # 10 checks and the 2 images' build cases
    assert sorted(suite.name for suite in junit) == [
        "//app:app_test linux/amd64",
        "//static:static_test linux/amd64",
        "build linux/amd64",
    ]
    assert len(_lines(result, "PASS")) == 10
    assert _created_probe_containers(docker_api, started) > 0  # commands and file reads used containers
    assert not _probe_containers(docker_api)  # and none is left

    again = time.time()
    result, junit = images.test()
    assert result.exit_code == 0, result.output
    passes = _lines(result, "PASS")
    assert len(passes) == 10 and all(line.endswith("(cached)") for line in passes)
    assert _created_probe_containers(docker_api, again) == 0  # nothing ran
    assert junit is not None and junit.time == 0


def test_breaking_one_check_exits_4_with_one_junit_failure(images: Images) -> None:
    assert images.test("//app:app_test")[0].exit_code == 0
    images.ws.write({"app/Dockerfile": Images.app_dockerfile(images.busybox, user="root")})
    result, junit = images.test("//app:app_test")
    assert result.exit_code == 4, result.output
    assert _lines(result, "FAIL") == [
        "FAIL //app:app_test linux/amd64 metadata user: user is 'root', expected 'company'"
    ]
    assert junit is not None
    assert (junit.tests, junit.failures, junit.errors) == (7, 1, 0)  # 6 checks and //app:app's build case
    failed = [case for suite in junit for case in suite if case.is_failure]
    assert [(case.classname, case.name) for case in failed] == [("//app:app_test", "metadata user")]
    assert failed[0].result[0].message == "user is 'root', expected 'company'"


def test_scratch_image_without_a_shell_has_its_files_and_commands_checked(images: Images) -> None:
    result, _ = images.test("//static:static_test", "--no-cache")
    assert result.exit_code == 0, result.output
    assert _lines(result, "PASS") == [
        "PASS //static:static_test linux/amd64 busybox echo",
        "PASS //static:static_test linux/amd64 no file /bin/sh",
        "PASS //static:static_test linux/amd64 file /app/busybox",
        "PASS //static:static_test linux/amd64 metadata entrypoint",
    ]


def test_command_timeout_fails_the_check_and_leaves_no_container(images: Images, docker_api: Any) -> None:
    images.ws.write(
        {
            "slow/BUILD": (
                'image_test(name = "slow", image = "//app:app", '
                'commands = [{"name": "sleeps", "command": ["sleep", "30"]}])\n'
            )
        }
    )
    started = time.monotonic()
    result, junit = images.test("//slow:slow", "--timeout", "1")
    assert result.exit_code == 4, result.output
    assert time.monotonic() - started < 20
    assert "FAIL //slow:slow linux/amd64 sleeps: timed out after 1s (the container was killed)" in result.stdout
    assert not [c for c in _probe_containers(docker_api) if str(c.get("Image", "")).startswith(images.prefix)]
    assert junit is not None and junit.failures == 1


def test_image_that_fails_to_build_makes_its_tests_errors(images: Images) -> None:
    images.ws.write({"app/Dockerfile": Images.app_dockerfile(images.busybox, user="company") + "RUN false\n"})
    result, junit = images.test()
    assert result.exit_code == 1, result.output
    errors = _lines(result, "ERROR")
    assert len(errors) == 2
    assert errors[0].startswith("ERROR //app:app_test linux/amd64: image //app:app linux/amd64 failed to build:")
    assert junit is not None and (junit.tests, junit.errors, junit.failures, junit.skipped) == (4, 2, 1, 1)


def test_daemon_unreachable_is_one_error_line(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "a/BUILD": 'image(name = "a")\nimage_test(name = "t", image = ":a", metadata = {"user": "x"})\n',
            "a/Dockerfile": "FROM scratch\nCOPY BUILD /\n",
        }
    )
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    command = [sys.executable, "-m", "orchestrator", "--workspace", str(workspace.root)]
    command += ["--cache-dir", str(workspace.cache_dir), "test"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=Path.cwd())
    assert done.returncode == 2
    assert done.stderr.startswith("ERROR cannot reach the Docker daemon")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
