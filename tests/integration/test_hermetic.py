"""images.lock and hermetic builds on the real engine: pinned bases, and RUN steps without network."""

from __future__ import annotations

import http.server
import ipaddress
import json
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import pytest

from orchestrator.workspace.lockfile import LOCK_FILE
from tests.workspaces import ScratchWorkspace

pytestmark = pytest.mark.integration


class _Pong(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"pong\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def bridge_gateway(network: Mapping[str, Any], interface_address: Callable[[str], str | None]) -> str:
    """This host's address on the engine's default bridge, as a container on it reaches the host.

    A dockerd started with ``--bip`` or ``--bridge`` reports ``IPAM.Config[].Gateway``; a fresh one
    (scripts/start-docker on a fresh machine) reports only the subnet. Then the bridge interface
    (``docker0``) holds the address; failing that, dockerd gives the gateway the subnet's first address.
    """
    configs = (network.get("IPAM") or {}).get("Config") or []
    for config in configs:
        if config.get("Gateway") and ":" not in config["Gateway"]:
            return str(config["Gateway"])
    interface = (network.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    address = interface_address(interface)
    if address is not None:
        return address
    for config in configs:
        subnet = ipaddress.ip_network(config.get("Subnet") or "::/128", strict=False)
        if subnet.version == 4:
            return str(subnet.network_address + 1)
    raise AssertionError(f"cannot tell this host's address on the bridge from {network}")


def interface_ipv4(interface: str) -> str | None:
    """The IPv4 address of a network interface of this host (``ip -4 addr show``), or None."""
    try:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", interface], capture_output=True, text=True, check=False
        ).stdout
    except OSError:  # no iproute2
        return None
    words = out.split()
    return words[words.index("inet") + 1].partition("/")[0] if "inet" in words else None


@pytest.mark.parametrize(
    ("network", "interface", "expected"),
    [
        ({"IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}}, None, "172.17.0.1"),
        ({"IPAM": {"Config": [{"Subnet": "172.18.0.0/16"}]}, "Options": {}}, "172.18.0.7", "172.18.0.7"),
        ({"IPAM": {"Config": [{"Subnet": "fd00::/64"}, {"Subnet": "172.19.0.0/16"}]}}, None, "172.19.0.1"),
    ],
    ids=["reported", "from-the-interface", "first-address-of-the-subnet"],
)
def test_bridge_gateway_without_a_reported_gateway(
    network: Mapping[str, Any], interface: str | None, expected: str
) -> None:
    assert bridge_gateway(network, lambda name: interface) == expected


@pytest.fixture
def host_server(docker_engine: object) -> Iterator[str]:
    """An HTTP server on this host that containers reach through the bridge's gateway: ``ip:port``."""
    client = docker.APIClient()
    try:
        gateway = bridge_gateway(client.inspect_network("bridge"), interface_ipv4)
    finally:
        client.close()
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Pong)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"{gateway}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def prefix(docker_engine: object) -> Iterator[str]:
    value = f"oh-{uuid.uuid4().hex[:8]}"
    yield value
    client = docker.APIClient()
    try:
        for image in client.images():
            for tag in image.get("RepoTags") or []:
                if tag.startswith(value):
                    client.remove_image(tag, force=True)
    finally:
        client.close()


def write_fetcher(
    ws: ScratchWorkspace, prefix: str, busybox: str, server: str, *, hermetic: bool, executor: str = "auto"
) -> None:
    host, _, port = server.partition(":")
    ws.write(
        {
            "WORKSPACE": f'workspace(executor = "{executor}")\n',
            "net/BUILD": (
                f'image(name = "net", repository = "{prefix}-net", srcs = ["Dockerfile"], hermetic = {hermetic})\n'
            ),
            "net/Dockerfile": (
                f"FROM {busybox}\n"
                # busybox's wget crashes in a static build; nc speaks enough HTTP
                f"RUN printf 'GET /ping HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc {host} {port} > /pong"
                " && grep -q pong /pong\n"
            ),
        }
    )


@pytest.mark.parametrize("executor", ["buildkit", "classic"])
def test_a_run_reaching_the_network_works_unless_hermetic(
    workspace: ScratchWorkspace, busybox_image: str, host_server: str, prefix: str, executor: str
) -> None:
    write_fetcher(workspace, prefix, busybox_image, host_server, hermetic=False, executor=executor)
    result = workspace.run("build")
    assert result.exit_code == 0, result.output

    write_fetcher(workspace, prefix, busybox_image, host_server, hermetic=True, executor=executor)
    result = workspace.run("build")
    assert result.exit_code == 2  # hermetic, but its base is not pinned
    assert f"uses {busybox_image}, which images.lock does not pin" in result.output

    locked = workspace.run("lock")
    assert locked.exit_code == 0, locked.output
    pins = json.loads((workspace.root / LOCK_FILE).read_text())["bases"][busybox_image]
    client = docker.APIClient()
    try:
        busybox_id = client.inspect_image(busybox_image)["Id"]
    finally:
        client.close()
    assert pins == {"linux/amd64": {"digest": busybox_id, "source": "engine"}}

    report = workspace.root.parent / "report.json"
    result = workspace.run("build", "--locked", "--report", str(report))
    assert result.exit_code == 1, result.output  # the same RUN, without network, fails
    node = json.loads(report.read_text())["nodes"][0]
    assert node["status"] == "failed"
    with open(node["log"]) as handle:
        log = handle.read()
    # The build named the pinned image, not the tag: by ID (classic), or by the tag BuildKit is given
    # for that ID (it would pull "docker.io/library/sha256" for an ID).
    if executor == "classic":
        assert f"FROM {busybox_id}" in log
    else:
        pinned = f"orchestrator-pinned:{busybox_id.removeprefix('sha256:')}"
        assert f"the image {busybox_id} is named {pinned}" in log
        assert f"FROM docker.io/library/{pinned}" in log, log
    assert "Network is unreachable" in log


def test_lock_update_and_outdated_after_a_base_is_imported_again(
    workspace: ScratchWorkspace, busybox_image: str, prefix: str
) -> None:
    base = f"{prefix}-base:1"
    client = docker.APIClient()
    try:
        client.tag(busybox_image, f"{prefix}-base", "1")
        workspace.write(
            {
                "WORKSPACE": "",
                "a/BUILD": f'image(name = "a", repository = "{prefix}-a")\n',
                "a/Dockerfile": f"FROM {base}\nRUN echo a > /a\n",
                "b/BUILD": f'image(name = "b", repository = "{prefix}-b")\n',
                "b/Dockerfile": f"FROM {prefix}-a\nRUN echo b > /b\n",
                "c/BUILD": f'image(name = "c", repository = "{prefix}-c")\n',
                "c/Dockerfile": f"FROM {busybox_image}\nRUN echo c > /c\n",
            }
        )
        assert workspace.run("lock").exit_code == 0
        assert workspace.run("build", "--locked").exit_code == 0
        assert workspace.lines("query", "outdated") == []
        # the base is imported again with other content: same name, another image
        client.tag(f"{prefix}-a:latest", f"{prefix}-base", "1")
        lines = workspace.lines("query", "outdated")
        assert lines[0].startswith(f"{base} linux/amd64: sha256:") and "-> sha256:" in lines[0]
        assert lines[1:] == ["  //a:a", "  //b:b"]  # exactly its reverse dependencies
        before = workspace.keys()
        updated = workspace.run("lock", "--update", base)
        assert updated.exit_code == 0 and f"updated {base} linux/amd64" in updated.output
        after = workspace.keys()
        assert {k for k in after if after[k] != before[k]} == {"//a:a linux/amd64", "//b:b linux/amd64"}
        assert workspace.lines("query", "outdated") == []
    finally:
        client.close()


def test_a_base_in_a_registry_is_pinned_to_its_manifest_digest(
    workspace: ScratchWorkspace, busybox_image: str, registry: str, prefix: str
) -> None:
    base = f"{registry}/{prefix}/base"
    client = docker.APIClient()
    try:
        client.tag(busybox_image, base, "1")
        pushed = [m for m in client.push(base, tag="1", stream=True, decode=True) if "aux" in m]
        digest = pushed[-1]["aux"]["Digest"]
        client.remove_image(f"{base}:1")  # only the registry has it now
    finally:
        client.close()
    workspace.write(
        {
            "WORKSPACE": "",
            "a/BUILD": f'image(name = "a", repository = "{prefix}-a")\n',
            "a/Dockerfile": f"FROM {base}:1\nRUN echo a > /a\n",
        }
    )
    locked = workspace.run("lock")
    assert locked.exit_code == 0, locked.output
    pins = json.loads((workspace.root / LOCK_FILE).read_text())["bases"][f"{base}:1"]
    assert pins == {"linux/amd64": {"digest": digest, "source": "registry"}}
    report = workspace.root.parent / "report.json"
    result = workspace.run("build", "--locked", "--report", str(report))
    assert result.exit_code == 0, result.output
    with open(json.loads(report.read_text())["nodes"][0]["log"]) as handle:
        assert f"FROM {base}@{digest}" in handle.read()  # pulled by digest, not by tag
