"""DockerExecutor against the real engine: builds, failures, cancelling, inspecting, an absent daemon."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.core.platforms import host_platform
from orchestrator.engine.api import KEY_LABEL, BuildFailed, BuildRequest, DaemonUnavailable
from orchestrator.engine.docker import DockerExecutor
from orchestrator.errors import InputChanged
from orchestrator.keys.context import context_entries
from orchestrator.keys.digests import hash_bytes
from orchestrator.keys.inputs import ContextCheck, digest_manifest, inputs_manifest
from orchestrator.pipeline.request import SENT_DOCKERFILE
from tests.integration.conftest import TEST_LABEL

pytestmark = pytest.mark.integration

RUN_SH = "#!/bin/sh\nset -e\ntest -x /app/run.sh\ncat /app/hello.txt > /app/out.txt\necho run.sh-ran\n"


def _request(tmp_path: Path, repo: str, body: str, *, base: str, files: dict[str, str] | None = None) -> BuildRequest:
    """A request to build ``repo`` from a context of ``files``; the Dockerfile is FROM ``base`` + ``body``.

    The user's own Dockerfile in the context names an upstream base; the text sent is the rebound one,
    labelled so that the test's clean-up finds every intermediate image and container.
    """
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox:upstream-that-does-not-exist\n")
    for rel, text in (files or {}).items():
        (ctx / rel).write_text(text)
    if "run.sh" in (files or {}):
        (ctx / "run.sh").chmod(0o755)
    key = "0123456789abcdef"
    return BuildRequest(
        node=Node(label=Label("app", "web"), platform=host_platform()),
        key=key,
        image=f"{repo}:key-{key}",
        context=context_entries(ctx, Path("Dockerfile"), workspace_root=tmp_path),
        dockerfile_path=SENT_DOCKERFILE,
        dockerfile_text=f"FROM {base}\nLABEL {TEST_LABEL}={repo}\n{body}",
        platform=host_platform(),
        labels=((KEY_LABEL, key), ("org.opencontainers.image.revision", "abc123")),
        log_path=str(tmp_path / "logs" / "app_web.log"),
    )


def test_build_produces_an_image_with_the_key_label_and_the_labels(
    docker_engine: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    body = 'ARG GREETING\nCOPY hello.txt run.sh /app/\nRUN test "$GREETING" = hi && /app/run.sh\n'
    request = _request(tmp_path, scratch_repo, body, base=busybox_image, files={"hello.txt": "hi\n", "run.sh": RUN_SH})
    request = dataclasses.replace(request, build_args=(("GREETING", "hi"),))
    result = docker_engine.build(request, threading.Event())
    assert docker_engine.inspect(request.image) is None  # built untagged: the pipeline tags it once checked
    info = docker_engine.inspect(result.image_id)
    assert info is not None
    assert result.image_id.startswith("sha256:")
    assert info.labels[KEY_LABEL] == request.key
    assert info.labels["org.opencontainers.image.revision"] == "abc123"
    assert info.platform == host_platform()
    assert info.repo_tags == ()
    log = Path(request.log_path).read_text()
    assert "run.sh-ran" in log
    assert f"FROM {busybox_image}" in log  # the rebound text, not the user's Dockerfile


def test_tag_points_a_human_tag_at_the_image(
    docker_engine: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    request = _request(tmp_path, scratch_repo, "", base=busybox_image)
    image_id = docker_engine.build(request, threading.Event()).image_id
    docker_engine.tag(image_id, scratch_repo, "latest")
    info = docker_engine.inspect(f"{scratch_repo}:latest")
    assert info is not None
    assert info.image_id == image_id
    assert docker_engine.image_ids(scratch_repo) == (image_id,)
    assert docker_engine.remove_image(f"{scratch_repo}:latest")
    assert not docker_engine.remove_image(f"{scratch_repo}:latest")


def test_failing_run_raises_build_failed_with_the_log_tail_and_tags_nothing(
    docker_engine: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    request = _request(tmp_path, scratch_repo, "RUN echo boom-marker && false\n", base=busybox_image)
    with pytest.raises(BuildFailed) as caught:
        docker_engine.build(request, threading.Event())
    failure = caught.value
    assert str(failure).startswith(f"{request.node}: ")
    assert "returned a non-zero code: 1" in str(failure)
    assert "boom-marker" in failure.log_tail
    assert "non-zero code" in failure.log_tail
    assert len(failure.log_tail.splitlines()) <= 25
    assert failure.log_path == request.log_path
    assert "boom-marker" in Path(request.log_path).read_text()
    assert docker_engine.inspect(request.image) is None


@pytest.mark.parametrize("wrong", ["key", "platform"])
def test_image_with_the_wrong_key_or_platform_fails_and_is_untagged(
    docker_engine: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path, wrong: str
) -> None:
    request = _request(tmp_path, scratch_repo, "", base=busybox_image)
    if wrong == "key":
        request = dataclasses.replace(request, labels=((KEY_LABEL, "another-key"),))
    else:
        # The classic builder accepts a foreign platform and builds from the native base regardless.
        foreign = "linux/arm64" if host_platform() != "linux/arm64" else "linux/amd64"
        request = dataclasses.replace(request, platform=foreign)
    with pytest.raises(BuildFailed, match=f"wrong platform/key: .*{wrong}"):
        docker_engine.build(request, threading.Event())
    assert docker_engine.inspect(request.image) is None


def test_cancel_stops_a_running_step_and_leaves_no_container(
    docker_engine: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path, docker_api: Any
) -> None:
    request = _request(tmp_path, scratch_repo, "RUN sleep 30\n", base=busybox_image)
    mine = {"label": f"{TEST_LABEL}={scratch_repo}"}
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(docker_engine.build, request, cancel)
        _wait_until(lambda: docker_api.containers(filters=mine), "the RUN step's container to start")
        time.sleep(1)
        cancel.set()
        cancelled_at = time.monotonic()
        with pytest.raises(BuildFailed, match="cancelled"):
            future.result(timeout=10)
        assert time.monotonic() - cancelled_at < 3
    # The engine kills and removes the step's container once it sees the connection close.
    _wait_until(lambda: not docker_api.containers(all=True, filters=mine), "the container to be removed")
    assert docker_engine.inspect(request.image) is None


def test_changed_input_fails_the_build(
    docker_engine: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    request = _request(tmp_path, scratch_repo, "COPY hello.txt /\n", base=busybox_image, files={"hello.txt": "hi\n"})
    (tmp_path / "ctx/hello.txt").write_text("hello again\n")
    with pytest.raises(InputChanged, match=r"hello\.txt changed during the build"):
        docker_engine.build(request, threading.Event())


def test_same_size_edit_after_hashing_is_caught_before_anything_is_sent(
    docker_engine: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path, docker_api: Any
) -> None:
    request = _request(tmp_path, scratch_repo, "COPY hello.txt /\n", base=busybox_image, files={"hello.txt": "hi\n"})
    hashes = {e.path: hash_bytes((tmp_path / "ctx" / e.path).read_bytes(), "xxh3") for e in request.context}
    check = ContextCheck(
        node=str(request.node),
        algorithm="xxh3",
        expected=digest_manifest(inputs_manifest("dockerfile-hash", request.context, hashes), "xxh3"),
        dockerfile_hash="dockerfile-hash",
    )
    request = dataclasses.replace(request, context_check=check)
    docker_engine.build(request, threading.Event())  # the check passes while nothing changed
    ours = {"label": f"{TEST_LABEL}={scratch_repo}"}  # every image this test's builds make, intermediate too
    images_before = set(docker_api.images(all=True, quiet=True, filters=ours))
    (tmp_path / "ctx/hello.txt").write_text("ho\n")  # the same size: only the content tells
    with pytest.raises(InputChanged, match=r"an input changed after it was hashed"):
        docker_engine.build(request, threading.Event())
    assert set(docker_api.images(all=True, quiet=True, filters=ours)) == images_before  # the engine received nothing


def test_inspect_of_a_missing_image_is_none(docker_engine: DockerExecutor, scratch_repo: str) -> None:
    assert docker_engine.inspect(f"{scratch_repo}:missing") is None


def test_bogus_base_url_raises_daemon_unavailable() -> None:
    executor = DockerExecutor(base_url="unix:///nonexistent.sock")
    with pytest.raises(DaemonUnavailable, match=r"unix:///nonexistent\.sock: .*is dockerd running\?"):
        executor.ping()


def test_bogus_docker_host_raises_daemon_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(DaemonUnavailable, match=r"cannot reach the Docker daemon at unix:///nonexistent\.sock"):
        DockerExecutor().inspect("debian:bookworm")


def _wait_until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
