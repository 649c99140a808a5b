"""Dockerfiles the orchestrator rewrites (a LABEL appended) built on the real engine as Docker builds them."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from orchestrator.engine.api import KEY_LABEL
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration

# Labels a LABEL instruction has to escape: quote, "$", both escape characters, a space.
LABELS = {"org.example.odd": 'a"b\\c`d$e {x} é', "org.example.plain": "v"}


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique repository prefix; every image tagged with it is removed afterwards."""
    prefix = f"ot-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = docker.APIClient()
    for image in client.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix):
                client.remove_image(tag, force=True)


def _docker_build(client: Any, dockerfile: str, tag: str, executor: str) -> None:
    """``docker build`` of ``dockerfile`` alone, as a user would run it: by the classic builder (the
    engine's API), or by BuildKit (a docker CLI, the Dockerfile on stdin)."""
    if executor == "buildkit":
        _buildkit_build(dockerfile, tag)
        return
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    for chunk in client.build(fileobj=context.getvalue(), custom_context=True, tag=tag, rm=True, decode=True):
        assert "error" not in chunk, chunk


def _buildkit_build(dockerfile: str, tag: str) -> None:
    """BuildKit's build of ``dockerfile``: ``docker buildx build --load`` or ``DOCKER_BUILDKIT=1 docker build``,
    by the ``docker`` on PATH or ``/usr/bin/docker``, whichever works first (as the executor's probe tries them)."""
    failures = []
    for cli in dict.fromkeys(c for c in (shutil.which("docker"), "/usr/bin/docker") if c and os.path.isfile(c)):
        for command in ([cli, "buildx", "build", "--load"], [cli, "build"]):
            done = subprocess.run(
                [*command, "-t", tag, "-"],
                input=dockerfile,
                env={**os.environ, "DOCKER_BUILDKIT": "1"},
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                return
            failures.append(f"{' '.join(command)}: {done.stderr.strip()}")
    pytest.fail("no docker CLI builds with BuildKit here:\n" + "\n".join(failures))


def _run(client: Any, image: str, *command: str) -> str:
    output: bytes = docker.from_env().containers.run(image, list(command), remove=True)
    return output.decode()


def _created_by(client: Any, image: str) -> list[str]:
    return [str(layer["CreatedBy"]) for layer in client.history(image)]


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM {busybox}\nRUN echo hi > /hi.txt \\",
        "FROM {busybox}\nRUN echo hi \\\n  > /hi.txt \\\n# a comment\n\n",
        "# escape=`\nFROM {busybox}\nRUN echo hi > /hi.txt `\n",
    ],
    ids=["no-newline", "comment-after", "backtick-escape"],
)
@pytest.mark.parametrize("executor", ["buildkit", "classic"])
def test_dockerfile_ending_in_a_continuation_builds_as_docker_builds_it_with_the_key_label(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str, dockerfile: str, executor: str
) -> None:
    text = dockerfile.format(busybox=busybox_image)
    labels = ", ".join(f"{k!r}: {v!r}" for k, v in LABELS.items())
    workspace.write(
        {
            "app/BUILD": f'image(name = "app", repository = "{prefix}-app", labels = {{{labels}}})\n',
            "app/Dockerfile": text,
        }
    )
    [key] = workspace.keys().values()
    result = workspace.run("build", "--executor", executor)
    assert result.exit_code == 0, result.output

    client = docker.APIClient()
    built = f"{prefix}-app:latest"
    config = client.inspect_image(built)["Config"]
    assert config["Labels"][KEY_LABEL] == key
    assert {k: config["Labels"][k] for k in LABELS} == LABELS
    assert _run(client, built, "cat", "/hi.txt") == "hi\n"  # the LABEL was not swallowed into the RUN

    plain = f"{prefix}-plain:latest"
    _docker_build(client, text, plain, executor)  # by the same builder
    assert _run(client, plain, "cat", "/hi.txt") == "hi\n"
    # The same RUN step, then the orchestrator's LABEL step on top (each builder words it its way).
    ours, theirs = _created_by(client, built), _created_by(client, plain)
    assert ours[1:] == theirs
    assert ours[0].startswith({"classic": "/bin/sh -c #(nop)  LABEL ", "buildkit": "LABEL "}[executor]), ours
