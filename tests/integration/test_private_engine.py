"""The private engine of fault tests (tests/engines.py): its faults, and that it leaves the host as it was."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.engines import PrivateEngine, running_engine
from tests.integration.conftest import BUSYBOX_IMAGE

pytestmark = pytest.mark.integration


def test_the_private_engine_starts_quickly_with_busybox_on_its_own_bridge(private_engine: PrivateEngine) -> None:
    assert private_engine.start_seconds < 10
    client = private_engine.client()
    try:
        assert client.inspect_image(BUSYBOX_IMAGE)["Id"].startswith("sha256:")
        info = client.info()
        assert info["DockerRootDir"] == str(private_engine.root / "data")
        bridge = client.inspect_network("bridge")
        assert bridge["Options"]["com.docker.network.bridge.name"] == private_engine.name
        container = client.create_container(BUSYBOX_IMAGE, ["sh", "-c", "cat /proc/net/route"])
        client.start(container)
        assert client.wait(container, timeout=30)["StatusCode"] == 0
        route = client.logs(container).decode()
        client.remove_container(container, force=True)
    finally:
        client.close()
    gateway_hex = socket.inet_aton(private_engine.gateway)[::-1].hex().upper()
    assert gateway_hex in route  # the container's default route goes through the engine's own bridge


def test_a_restart_after_kill9_keeps_images_and_containers(private_engine: PrivateEngine) -> None:
    client = private_engine.client()
    try:
        # a PID 1 that ends on SIGTERM: the restarted dockerd stops it at once rather than after 10 s
        container = client.create_container(BUSYBOX_IMAGE, ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"])["Id"]
        client.start(container)
    finally:
        client.close()
    first = private_engine.pid
    private_engine.kill9()
    assert not private_engine.running()
    private_engine.restart()
    assert private_engine.pid != first
    assert container in private_engine.container_ids()


def test_a_frozen_engine_accepts_connections_and_answers_nothing_until_continued(
    private_engine: PrivateEngine,
) -> None:
    private_engine.sigstop()
    try:
        assert _ping(private_engine.socket, timeout=1.0) is None
    finally:
        private_engine.sigcont()
    assert _ping(private_engine.socket, timeout=10.0) == 200


def test_the_private_engine_leaves_nothing_behind_even_after_kill9(tmp_path: Path) -> None:
    docker0_before = _run("ip", "-4", "-o", "addr", "show")
    with running_engine() as engine:
        from tests.integration.conftest import _rootfs_tar

        engine.import_rootfs(BUSYBOX_IMAGE, _rootfs_tar())
        client = engine.client()
        try:
            client.start(client.create_container(BUSYBOX_IMAGE, ["sleep", "300"]))
        finally:
            client.close()
        engine.kill9()  # the container runs on, under the engine's containerd
        root, name, containerd_socket = engine.root, engine.name, str(engine.containerd_socket)
    assert not root.exists()
    assert subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode != 0
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
    deadline = time.monotonic() + 5  # a killed shim's process takes a moment to be reaped
    while containerd_socket in _run("ps", "-eo", "args") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert containerd_socket not in _run("ps", "-eo", "args")
    assert _run("ip", "-4", "-o", "addr", "show") == docker0_before  # docker0 and the others untouched


def _ping(path: Path, timeout: float) -> int | None:
    """The status of ``GET /_ping`` on a unix socket, or None when nothing answers in time."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    connection = http.client.HTTPConnection("docker", timeout=timeout)
    try:
        sock.connect(str(path))
        connection.sock = sock
        connection.request("GET", "/_ping")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()
        sock.close()


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout
