"""DockerExecutor building with BuildKit, through a docker CLI, against the real engine.

What the classic builder guarantees holds (exact context, key label, platform, untagged, cancel),
plus what only BuildKit does: cache mounts, secrets that leave no trace, parallel stages, ssh.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.core.platforms import host_platform
from orchestrator.engine.api import (
    KEY_LABEL,
    BuildFailed,
    BuildKitUnavailable,
    BuildRequest,
    ExtraFile,
    Secret,
)
from orchestrator.engine.buildkit import pinned_tag
from orchestrator.engine.docker import DockerExecutor
from orchestrator.errors import InputChanged
from orchestrator.keys.context import context_entries
from orchestrator.pipeline.request import SENT_DOCKERFILE
from tests.integration.conftest import BUSYBOX_IMAGE, TEST_LABEL, _rootfs_tar

if TYPE_CHECKING:
    from tests.engines import PrivateEngine

pytestmark = pytest.mark.integration

SYSTEM_CLI = "/usr/bin/docker"


@pytest.fixture(scope="module")
def buildkit(docker_engine: DockerExecutor) -> Iterator[DockerExecutor]:
    """An executor of its own on the test engine, building with BuildKit."""
    executor = DockerExecutor()
    executor.select_builder("buildkit")
    yield executor
    executor.close()


def _request(
    tmp_path: Path,
    repo: str,
    body: str,
    *,
    base: str,
    files: dict[str, str] | None = None,
    platform: str | None = None,
    key: str = "0123456789abcdef",
) -> BuildRequest:
    """A request to build from a context of ``files``; the Dockerfile sent is FROM ``base`` + ``body``."""
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox:upstream-that-does-not-exist\n")
    for rel, text in (files or {}).items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    platform = platform or host_platform()
    return BuildRequest(
        node=Node(label=Label("app", "web"), platform=platform),
        key=key,
        image=f"{repo}:key-{key}",
        context=context_entries(ctx, Path("Dockerfile"), workspace_root=tmp_path),
        dockerfile_path=SENT_DOCKERFILE,
        dockerfile_text=f"FROM {base}\nLABEL {TEST_LABEL}={repo}\n{body}",
        platform=platform,
        labels=((KEY_LABEL, key), ("org.opencontainers.image.revision", "abc123")),
        log_path=str(tmp_path / "logs" / f"{uuid.uuid4().hex[:6]}.log"),
    )


def _build(executor: DockerExecutor, request: BuildRequest, steps: list[str] | None = None) -> str:
    try:
        result = executor.build(request, threading.Event(), steps.append if steps is not None else None)
    except BuildFailed as exc:
        pytest.fail(f"the build failed: {exc}\n{exc.log_tail}")
    assert result.builder == "buildkit"
    return result.image_id


def test_select_builder_finds_buildkit_here(buildkit: DockerExecutor, docker_engine: DockerExecutor) -> None:
    executor = DockerExecutor()
    try:
        choice = executor.select_builder("buildkit")
        assert choice.name == "buildkit"
        assert choice.warning is None
        if os.path.exists(SYSTEM_CLI) and "buildx" not in choice.detail:
            assert choice.detail == f"{SYSTEM_CLI} build with DOCKER_BUILDKIT=1"
        assert executor.select_builder("auto") == choice  # probed once: the same answer
        classic = executor.select_builder("classic")
        assert (classic.name, classic.detail) == ("classic", "the engine's classic builder (POST /build)")
    finally:
        executor.close()


def test_build_labels_verifies_and_leaves_the_image_untagged(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    body = f'ARG GREETING\nRUN test "$GREETING" = hi && echo said-$GREETING {uuid.uuid4().hex}\n'
    request = _request(tmp_path, scratch_repo, body, base=busybox_image)
    request = dataclasses.replace(request, build_args=(("GREETING", "hi"),))
    steps: list[str] = []
    image_id = _build(buildkit, request, steps)
    info = buildkit.inspect(image_id)
    assert info is not None
    assert image_id.startswith("sha256:")
    assert info.labels[KEY_LABEL] == request.key
    assert info.labels["org.opencontainers.image.revision"] == "abc123"
    assert info.platform == host_platform()
    assert info.repo_tags == ()
    assert buildkit.inspect(request.image) is None
    log = Path(request.log_path).read_text()
    assert re.search(r"^#\d+ \d+\.\d+ said-hi ", log, re.MULTILINE), log  # the step's output, not its name
    assert any("RUN test" in step for step in steps), steps
    assert all(step.startswith("[") for step in steps), steps


def test_wrong_key_label_fails_the_build(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    request = _request(tmp_path, scratch_repo, "", base=busybox_image)
    request = dataclasses.replace(request, labels=((KEY_LABEL, "another-key"),))
    with pytest.raises(BuildFailed, match=r"wrong platform/key: .*key"):
        buildkit.build(request, threading.Event())


def test_copy_dot_copies_exactly_the_context_entries(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path, docker_api: Any
) -> None:
    request = _request(
        tmp_path,
        scratch_repo,
        "COPY . /ctx/\n",
        base=busybox_image,
        files={"a.txt": "a\n", "sub/b.txt": "b\n", "run.sh": "#!/bin/sh\n"},
    )
    ctx = Path(next(entry.abs_path or "" for entry in request.context if entry.path == "a.txt")).parent
    (ctx / "run.sh").chmod(0o755)
    (ctx / "link").symlink_to("a.txt")
    request = dataclasses.replace(request, context=context_entries(ctx, Path("Dockerfile"), workspace_root=tmp_path))
    image_id = _build(buildkit, request)
    members = _image_tree(docker_api, image_id, "/ctx", scratch_repo)
    expected = {f"ctx/{entry.path}" for entry in request.context} | {"ctx"}
    assert set(members) == expected
    assert f"ctx/{SENT_DOCKERFILE}" not in members and "ctx/.dockerignore" not in members
    assert members["ctx/link"].issym() and members["ctx/link"].linkname == "a.txt"
    assert members["ctx/run.sh"].mode & 0o111
    assert not members["ctx/a.txt"].mode & 0o111


def test_changed_input_fails_before_anything_is_sent(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    request = _request(tmp_path, scratch_repo, "COPY hello.txt /\n", base=busybox_image, files={"hello.txt": "hi\n"})
    Path(next(e.abs_path for e in request.context if e.path == "hello.txt") or "").write_text("hello again\n")
    with pytest.raises(InputChanged, match=r"hello\.txt changed during the build"):
        buildkit.build(request, threading.Event())


def test_cache_mount_keeps_what_an_earlier_build_wrote(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex
    mount = f"--mount=type=cache,target=/cache,id={scratch_repo}"
    first = _request(tmp_path, scratch_repo, f"RUN {mount} echo first-{nonce} > /cache/mark\n", base=busybox_image)
    _build(buildkit, first)
    second = _request(
        tmp_path,
        scratch_repo,
        f"RUN {mount} cat /cache/mark && grep -q first-{nonce} /cache/mark\n",
        base=busybox_image,
    )
    _build(buildkit, second)
    assert f"first-{nonce}" in Path(second.log_path).read_text()


def test_secrets_from_env_and_file_reach_the_build_and_leave_no_trace(
    buildkit: DockerExecutor,
    busybox_image: str,
    scratch_repo: str,
    tmp_path: Path,
    docker_api: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env_canary = f"canary-env-{uuid.uuid4().hex}"
    file_canary = f"canary-file-{uuid.uuid4().hex}"
    monkeypatch.setenv("ORCHESTRATOR_TEST_TOKEN", env_canary)
    secret_file = tmp_path / "file-token"
    secret_file.write_text(file_canary)

    def split(canary: str) -> str:  # the Dockerfile names the value only in two halves, so history cannot hold it
        return f'"{canary[:12]}""{canary[12:]}"'

    body = (
        "RUN --mount=type=secret,id=token cat /run/secrets/token > /dev/null && "
        f'test "$(cat /run/secrets/token)" = {split(env_canary)}\n'
        f'RUN --mount=type=secret,id=filetok test "$(cat /run/secrets/filetok)" = {split(file_canary)} '
        "&& echo secrets-checked\n"
    )
    request = _request(tmp_path, scratch_repo, body, base=busybox_image)
    request = dataclasses.replace(
        request,
        secrets=(Secret(id="token", env="ORCHESTRATOR_TEST_TOKEN"), Secret(id="filetok", file=str(secret_file))),
    )
    image_id = _build(buildkit, request)
    log = Path(request.log_path).read_text()
    assert re.search(r"^#\d+ \d+\.\d+ secrets-checked$", log, re.MULTILINE), log
    saved = b"".join(docker_api.get_image(image_id))
    history = subprocess.run(
        [SYSTEM_CLI if os.path.exists(SYSTEM_CLI) else "docker", "history", "--no-trunc", image_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = json.dumps(docker_api.inspect_image(image_id))
    layers = list(_layer_tars(saved))
    assert layers  # the saved image holds its layers
    for canary in (env_canary, file_canary):
        assert canary not in log
        assert canary.encode() not in saved
        assert all(canary.encode() not in layer for layer in layers)
        assert canary not in history
        assert canary not in config


def test_a_secret_whose_variable_is_unset_fails_clearly(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_TEST_UNSET", raising=False)
    request = _request(tmp_path, scratch_repo, "RUN --mount=type=secret,id=t true\n", base=busybox_image)
    request = dataclasses.replace(request, secrets=(Secret(id="t", env="ORCHESTRATOR_TEST_UNSET"),))
    with pytest.raises(BuildFailed, match="ORCHESTRATOR_TEST_UNSET is not set"):
        buildkit.build(request, threading.Event())


def test_ssh_without_an_agent_fails_clearly(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    request = dataclasses.replace(_request(tmp_path, scratch_repo, "", base=busybox_image), ssh=("default",))
    with pytest.raises(BuildFailed, match="SSH_AUTH_SOCK is not set"):
        buildkit.build(request, threading.Event())


def test_ssh_agent_is_forwarded(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = subprocess.run(["sh", "-c", "command -v ssh-agent"], capture_output=True, text=True, check=False).stdout
    if not agent.strip():
        pytest.skip("no ssh-agent here")
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen([agent.strip(), "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if sock.exists():
                break
            time.sleep(0.1)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        body = "RUN --mount=type=ssh test -S $SSH_AUTH_SOCK && echo agent-there\n"
        request = dataclasses.replace(_request(tmp_path, scratch_repo, body, base=busybox_image), ssh=("default",))
        _build(buildkit, request)
        assert "agent-there" in Path(request.log_path).read_text()
    finally:
        process.terminate()
        process.wait()


def test_engine_pinned_base_named_by_id(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    base = buildkit.inspect(busybox_image)
    assert base is not None
    body = f"COPY --from={base.image_id} /bin/busybox /copied-busybox\nRUN test -x /copied-busybox\n"
    request = _request(tmp_path, scratch_repo, body, base=base.image_id)
    image_id = _build(buildkit, request)
    pinned = buildkit.inspect(pinned_tag(base.image_id.removeprefix("sha256:")))
    assert pinned is not None and pinned.image_id == base.image_id
    log = Path(request.log_path).read_text()
    assert f"is named {pinned_tag(base.image_id.removeprefix('sha256:'))}" in log
    assert buildkit.inspect(image_id) is not None
    _build(buildkit, dataclasses.replace(request, log_path=str(tmp_path / "again.log")))  # tagged already: fine
    assert buildkit.remove_image(pinned_tag(base.image_id.removeprefix("sha256:")))  # only untags the shared base


def test_arm64_build_under_emulation(
    buildkit: DockerExecutor, arm64_busybox: Path, scratch_repo: str, tmp_path: Path
) -> None:
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(_rootfs_tar(arm64_busybox))
    base_request = _request(tmp_path, scratch_repo, "", base="scratch", platform="linux/arm64", key="arm64-base")
    base_request = dataclasses.replace(
        base_request,
        dockerfile_text=f"FROM scratch\nLABEL {TEST_LABEL}={scratch_repo}\nADD rootfs.tar /\n",
        extra_files=(ExtraFile(path="rootfs.tar", source=str(rootfs)),),
    )
    base_id = _build(buildkit, base_request)
    body = (
        f'RUN uname -m > /machine && test "$(cat /machine)" = aarch64 && echo arch-$(cat /machine) {uuid.uuid4().hex}\n'
    )
    request = _request(tmp_path, scratch_repo, body, base=base_id, platform="linux/arm64", key="arm64-leaf")
    image_id = _build(buildkit, request)
    info = buildkit.inspect(image_id)
    assert info is not None
    assert info.platform == "linux/arm64"
    assert "arch-aarch64" in Path(request.log_path).read_text()


def test_failing_run_raises_build_failed_with_the_log_tail(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    request = _request(tmp_path, scratch_repo, "RUN echo boom-marker && false\n", base=busybox_image)
    with pytest.raises(BuildFailed) as caught:
        buildkit.build(request, threading.Event())
    failure = caught.value
    assert str(failure).startswith(f"{request.node}: ")
    assert "exit code: 1" in str(failure)
    assert "boom-marker" in failure.log_tail
    assert len(failure.log_tail.splitlines()) <= 25
    assert failure.log_path == request.log_path


def test_cancel_stops_a_running_step_quickly(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    request = _request(tmp_path, scratch_repo, f"RUN sleep 60 && echo {uuid.uuid4().hex}\n", base=busybox_image)
    cancel = threading.Event()
    started = threading.Event()

    def progress(step: str) -> None:
        if "RUN sleep 60" in step:
            started.set()

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(buildkit.build, request, cancel, progress)
        assert started.wait(30), "the RUN step did not start"
        time.sleep(1)
        cancel.set()
        cancelled_at = time.monotonic()
        with pytest.raises(BuildFailed, match="cancelled"):
            future.result(timeout=20)
        stopped_in = time.monotonic() - cancelled_at
    print(f"cancelled BuildKit build stopped in {stopped_in:.2f} s")
    assert stopped_in < 6


def test_independent_stages_run_in_parallel(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex
    text = "".join(
        f"FROM {busybox_image} AS {name}\nRUN sleep 3 && echo {name}-{nonce} > /{name}\n" for name in ("a", "b", "c")
    )
    text += f"FROM {busybox_image}\nLABEL {TEST_LABEL}={scratch_repo}\n"
    text += "".join(f"COPY --from={name} /{name} /{name}\n" for name in ("a", "b", "c"))
    request = dataclasses.replace(_request(tmp_path, scratch_repo, "", base=busybox_image), dockerfile_text=text)
    started = time.monotonic()
    _build(buildkit, request)
    took = time.monotonic() - started
    print(f"three independent 'RUN sleep 3' stages built with BuildKit in {took:.2f} s")
    assert took < 8


def test_buildkit_unavailable_when_no_cli_has_it(docker_engine: DockerExecutor, tmp_path: Path) -> None:
    cli = "/usr/local/bin/docker"
    if not _refuses_buildkit(cli):
        cli = str(tmp_path / "docker")
        Path(cli).write_text(
            '#!/bin/sh\n[ "$1" = buildx ] && exit 1\n'
            'echo "ERROR: BuildKit is enabled but the buildx component is missing or broken." >&2\nexit 1\n'
        )
        Path(cli).chmod(0o755)
    executor = DockerExecutor()
    executor.buildkit_probe.candidates = lambda: (cli,)
    try:
        with pytest.raises(BuildKitUnavailable) as caught:
            executor.select_builder("buildkit")
        message = str(caught.value)
        assert message.startswith("--executor buildkit: no way to BuildKit works here: ")
        assert f"{cli}: BuildKit is enabled but the buildx component is missing or broken" in message
        assert message.endswith("or use --executor classic")
        assert caught.value.exit_code == 2
        fallback = executor.select_builder("auto")
        assert fallback.name == "classic"
        assert fallback.warning is not None and cli in fallback.warning
    finally:
        executor.close()


# --- helpers --------------------------------------------------------------------------------------


def _refuses_buildkit(cli: str) -> bool:
    if not os.access(cli, os.X_OK):
        return False
    done = subprocess.run([cli, "buildx", "version"], capture_output=True, check=False)
    return done.returncode != 0 and os.path.realpath(cli) != os.path.realpath(SYSTEM_CLI)


def _image_tree(api: Any, image_id: str, path: str, repo: str) -> dict[str, tarfile.TarInfo]:
    """Every member under ``path`` in the image, by name, read from a container that never runs."""
    container = api.create_container(image_id, command=["true"], labels={TEST_LABEL: repo})
    try:
        stream, _ = api.get_archive(container["Id"], path)
        data = b"".join(stream)
    finally:
        api.remove_container(container["Id"], force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name.rstrip("/"): member for member in tar.getmembers()}


def _layer_tars(saved: bytes) -> Iterator[bytes]:
    """The bytes of every layer tar in ``docker save`` output."""
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith("layer.tar"):
                f = tar.extractfile(member)
                assert f is not None
                yield f.read()


def test_frozen_engine_is_abandoned_after_the_engine_timeout(private_engine: PrivateEngine, tmp_path: Path) -> None:
    """A private engine (it holds BUSYBOX_IMAGE), SIGSTOPped mid-step: the CLI is killed, the build fails."""
    executor = DockerExecutor(base_url=private_engine.url)
    try:
        assert executor.select_builder("buildkit").name == "buildkit"  # probed against that engine
        repo = f"orchestrator-test-{uuid.uuid4().hex[:12]}"
        request = dataclasses.replace(
            _request(tmp_path, repo, f"RUN sleep 60 && echo {repo}\n", base=BUSYBOX_IMAGE), engine_timeout_s=4
        )
        started = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(
                executor.build, request, threading.Event(), lambda step: started.set() if "RUN sleep" in step else None
            )
            assert started.wait(60), "the build never reached its RUN step"
            time.sleep(1)
            private_engine.sigstop()
            frozen_at = time.monotonic()
            try:
                with pytest.raises(BuildFailed, match="did not answer for 4 s") as caught:
                    future.result(timeout=60)
                took = time.monotonic() - frozen_at
            finally:
                private_engine.sigcont()
        assert private_engine.url in str(caught.value)
        assert 4 <= took < 20, f"the frozen engine was given up after {took:.1f} s"
    finally:
        executor.close()


def test_network_none_and_no_cache_reach_buildkit(
    buildkit: DockerExecutor, busybox_image: str, scratch_repo: str, tmp_path: Path
) -> None:
    body = "RUN test ! -e /sys/class/net/eth0 && echo no-network-here\n"
    request = dataclasses.replace(
        _request(tmp_path, scratch_repo, body, base=busybox_image), network_mode="none", no_cache=True
    )
    _build(buildkit, request)
    log = Path(request.log_path).read_text()
    assert re.search(r"^#\d+ \d+\.\d+ no-network-here$", log, re.MULTILINE), log  # ran again: no cache
