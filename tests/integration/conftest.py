"""Fixtures for tests against a real Docker Engine: the executor, and a tiny busybox base image.

Without a reachable engine the integration tests are skipped, except in CI (``CI`` set), where a
skipped integration test would pass for the wrong reason: there they fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import tarfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.core.platforms import host_platform
from orchestrator.engine.api import KEY_LABEL, BuildFailed, BuildRequest, DaemonUnavailable, ExtraFile
from orchestrator.engine.docker import DockerExecutor

if TYPE_CHECKING:
    from tests.engines import PrivateEngine

BUSYBOX = Path("/bin/busybox")
BUSYBOX_IMAGE = "orchestrator-test-busybox:latest"
APPLETS = ("sh", "echo", "cat", "ls", "uname", "id", "sleep", "false", "true", "test", "chmod", "mkdir", "grep")
TEST_LABEL = "org.orchestrator.test"  # put on everything a test builds, to find and remove it afterwards


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerExecutor]:
    """A DockerExecutor on the local engine (``DOCKER_HOST`` or the default socket)."""
    executor = DockerExecutor()
    try:
        executor.ping()
    except DaemonUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"integration tests need a Docker Engine and CI is set: {exc}")
        pytest.skip(f"no Docker Engine: {exc}")
    yield executor
    executor.close()


@pytest.fixture(scope="session")
def docker_api(docker_engine: DockerExecutor) -> Iterator[Any]:
    """The SDK's client, for what tests check behind the executor's back (containers, intermediates)."""
    import docker

    api = docker.APIClient(version="auto")
    yield api
    api.close()


@pytest.fixture(scope="session")
def busybox_image(docker_engine: DockerExecutor, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``orchestrator-test-busybox:latest``: the host's static busybox as a one-layer image.

    Built through the executor itself (an extra file as the whole context); kept between runs
    like any base image, so later runs hit the engine's cache.
    """
    _check_static_busybox()
    work = tmp_path_factory.mktemp("busybox")
    rootfs = work / "rootfs.tar"
    rootfs.write_bytes(_rootfs_tar())
    key = "busybox-" + hashlib.sha256(rootfs.read_bytes()).hexdigest()[:16]
    request = BuildRequest(
        node=Node(label=Label("test", "busybox"), platform=host_platform()),
        key=key,
        image=BUSYBOX_IMAGE,
        context=(),
        extra_files=(ExtraFile(path="rootfs.tar", source=str(rootfs)),),
        dockerfile_path="Dockerfile",
        dockerfile_text='FROM scratch\nADD rootfs.tar /\nCMD ["sh"]\n',
        platform=host_platform(),
        labels=((KEY_LABEL, key),),
        log_path=str(work / "build.log"),
    )
    try:
        result = docker_engine.build(request, threading.Event())
    except BuildFailed as exc:
        pytest.fail(f"building the busybox base failed: {exc}\n{exc.log_tail}")
    docker_engine.tag(result.image_id, *BUSYBOX_IMAGE.split(":"))
    return BUSYBOX_IMAGE


@pytest.fixture
def private_engine() -> Iterator[PrivateEngine]:
    """A Docker Engine of the test's own (``tests/engines.py``), holding ``BUSYBOX_IMAGE``: one a
    fault test may kill -9, freeze or restart. Point the CLI at it with ``DOCKER_HOST=engine.url``.

    Needs root, dockerd and containerd; without them it skips (fails in CI). Starts in about 0.5 s.
    """
    with _private_engine() as engine:
        yield engine


@pytest.fixture
def small_disk_engine() -> Iterator[PrivateEngine]:
    """A private engine whose data-root (its /var/lib/docker) is a 96 MB file system: one that fills up."""
    with _private_engine(data_size_mb=96) as engine:
        yield engine


@contextlib.contextmanager
def _private_engine(data_size_mb: int | None = None) -> Iterator[PrivateEngine]:
    from tests.engines import EngineStartError, running_engine

    _check_static_busybox()
    with contextlib.ExitStack() as stack:
        try:
            engine = stack.enter_context(running_engine(data_size_mb=data_size_mb))
        except EngineStartError as exc:
            _unavailable(f"cannot start a private Docker Engine: {exc}")
        engine.import_rootfs(BUSYBOX_IMAGE, _rootfs_tar())
        yield engine


@pytest.fixture
def scratch_repo(docker_engine: DockerExecutor, docker_api: Any) -> Iterator[str]:
    """A unique repository ``orchestrator-test-<hex>``; its images, and every image or container
    labelled ``org.orchestrator.test=<repository>`` (intermediate ones too), are removed afterwards.
    """
    repo = f"orchestrator-test-{uuid.uuid4().hex[:12]}"
    yield repo
    for container in docker_api.containers(all=True, filters={"label": f"{TEST_LABEL}={repo}"}):
        docker_api.remove_container(container["Id"], force=True)
    for image_id in docker_engine.image_ids(repo):
        docker_engine.remove_image(image_id, force=True)
    _remove_labelled_images(docker_api, f"{TEST_LABEL}={repo}")


def remove_prefixed(api: Any, prefix: str, labels: Iterable[str] = ()) -> None:
    """Remove what a test made under ``prefix``: containers labelled ``TEST_LABEL=prefix``, every tag
    starting with ``prefix``, and the images labelled ``TEST_LABEL=<each of labels>`` (default: prefix)."""
    for container in api.containers(all=True, filters={"label": f"{TEST_LABEL}={prefix}"}):
        api.remove_container(container["Id"], force=True)
    for image in api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix):
                api.remove_image(tag, force=True)
    for label in labels or (prefix,):
        _remove_labelled_images(api, f"{TEST_LABEL}={label}")


def _remove_labelled_images(api: Any, label: str) -> None:
    """Remove the labelled images, children before parents (a parent with children cannot go)."""
    import docker.errors

    for _ in range(20):
        images = api.images(all=True, quiet=True, filters={"label": label})
        if not images:
            return
        for image_id in images:
            try:
                api.remove_image(image_id, force=True)
            except docker.errors.APIError:
                continue  # it still has a child: next round


def _check_static_busybox() -> None:
    """Fail clearly unless ``/bin/busybox`` is a static binary that can run in an empty image."""
    if not BUSYBOX.is_file():
        pytest.fail(f"{BUSYBOX} is missing: the integration tests need it (apt-get install busybox-static)")
    if _elf_interpreter(BUSYBOX.read_bytes()):
        pytest.fail(f"{BUSYBOX} is dynamically linked: the integration tests need busybox-static")


def _elf_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF file names a dynamic loader (has a PT_INTERP header)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff, phentsize, phnum = struct.unpack_from("<Q", elf, 0x20)[0], *struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def _rootfs_tar(busybox: Path = BUSYBOX) -> bytes:
    """bin/busybox (``busybox``: a static binary), a link per applet, and /tmp: a root file system, as tar bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        data = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.mode, info.size = 0o755, len(data)
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
    return out.getvalue()


ARM64_BUSYBOX = Path(__file__).resolve().parents[2] / "cache/busybox/linux-arm64/busybox"


def _unavailable(message: str) -> None:
    """Fail in CI (a skipped integration test would pass for the wrong reason), else skip."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on 127.0.0.1 and a free port: its address."""
    with _running_registry(tmp_path / "registry") as address:
        yield address


@pytest.fixture(scope="module")
def module_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real registry for a whole test module (its tests keep to repositories of their own): its address."""
    with _running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@contextlib.contextmanager
def _running_registry(workdir: Path) -> Iterator[str]:
    from tests.registry_server import registry_binary, running_registry

    if registry_binary() is None:
        _unavailable("the registry tests need docker-registry (apt-get install docker-registry)")
    with running_registry(workdir) as address:
        yield address


@pytest.fixture(scope="session")
def arm64_busybox() -> Path:
    """A static arm64 busybox (scripts/enable-emulation fetches it), with QEMU registered to run it."""
    from orchestrator.engine.emulation import emulator_problem

    problem = emulator_problem("linux/arm64", host_platform())
    if problem is not None:
        _unavailable(f"linux/arm64 cannot run here: {problem} (run scripts/enable-emulation)")
    if not ARM64_BUSYBOX.is_file():
        _unavailable(f"{ARM64_BUSYBOX} is missing (run scripts/enable-emulation)")
    return ARM64_BUSYBOX
