"""``orchestrator test --junit`` on the real Docker Engine when an image fails to build and another
image's check fails: one JUnit file holds both, and the step summary names both."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import junitparser
import pytest

from orchestrator.core.platforms import host_platform
from orchestrator.engine.docker_probe import TEST_RUN_LABEL
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(docker_api: Any) -> Iterator[str]:
    """A unique repository prefix; every image and probe container under it is removed afterwards."""
    made = f"ot-ci-{uuid.uuid4().hex[:8]}"
    yield made
    for container in docker_api.containers(all=True, filters={"label": f"{TEST_RUN_LABEL}=1"}):
        if str(container.get("Image", "")).startswith(made):
            docker_api.remove_container(container["Id"], force=True, v=True)
    for image in docker_api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(made):
                docker_api.remove_image(tag, force=True)


def test_failed_build_and_failed_check_share_one_junit_file(
    workspace: ScratchWorkspace,
    busybox_image: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workspace.write(
        {
            "good/BUILD": (
                f'image(name = "good", repository = "{prefix}-good")\n'
                'image_test(name = "good_test", image = ":good", commands = [\n'
                '    {"name": "says hi", "command": ["echo", "hi"], "expected_output": ["^hi$"]},\n'
                '    {"name": "says bye", "command": ["echo", "hi"], "expected_output": ["^bye$"]},\n'
                "])\n"
            ),
            "good/Dockerfile": f"FROM {busybox_image}\nENV GREETING=hi\n",
            "broken/BUILD": (
                f'image(name = "broken", repository = "{prefix}-broken")\n'
                'image_test(name = "broken_test", image = ":broken", metadata = {"user": "root"})\n'
            ),
            "broken/Dockerfile": f"FROM {busybox_image}\nRUN echo about to fail && exit 1\n",
        }
    )
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "junit.xml"
    started = time.monotonic()

    result = workspace.run("test", "--junit", str(junit))

    assert time.monotonic() - started < 30
    assert result.exit_code == 1, result.output  # a build failed: 1 wins over a failed check's 4
    xml = junitparser.JUnitXml.fromfile(str(junit))
    platform = host_platform()
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == [
        f"build {platform}",
        f"//broken:broken_test {platform}",
        f"//good:good_test {platform}",
    ]
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (5, 2, 1, 0)

    build = {case.classname: case for case in suites[f"build {platform}"]}
    assert build["//broken:broken"].is_failure and build["//broken:broken"].name == "build"
    assert "about to fail" in build["//broken:broken"].result[0].text  # the log tail
    assert build["//good:good"].is_passed

    checks = {case.name: case for case in suites[f"//good:good_test {platform}"]}
    assert checks["says hi"].is_passed
    assert checks["says bye"].is_failure

    (not_run,) = list(suites[f"//broken:broken_test {platform}"])  # its image never existed: an error
    assert not_run.is_error and not_run.name == f"build //broken:broken {platform}"

    text = summary.read_text()
    assert "## orchestrator test: ❌ failed (exit 1)" in text
    assert "| `//good:good_test " in text and "| says bye |" in text
    assert "<summary>❌ <code>//broken:broken</code>" in text and "about to fail" in text
