"""The registry client: names and index documents (pure), then against a real registry and tiny fakes.

The real registry is Debian's ``docker-registry`` (distribution 2.8), filled over HTTP by the tests
themselves (no Docker Engine). The fakes are ``http.server``s in a thread: one answering 500, one
demanding Basic credentials, one demanding a Bearer token from its own ``/token`` realm.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from docker.auth import INDEX_NAME, INDEX_URL

from orchestrator.registry.client import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Registry,
    RegistryError,
    RegistryUnavailable,
    RemoteImage,
    index_document,
    parse_address,
    read_credentials,
)
from tests.registry_server import free_port, registry_binary, running_registry

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(platform: str, *, repository: str = "cache/app", digest: str | None = None, size: int = 100) -> RemoteImage:
    return RemoteImage(
        repository=repository,
        tag=None,
        digest=digest or sha256(platform.encode()),
        media_type=DOCKER_MANIFEST,
        size=size,
        labels={},
        platform=platform,
    )


# --- addresses and names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:5000", ("http", "127.0.0.1:5000", "127.0.0.1:5000", "")),
        ("127.1.2.3", ("http", "127.1.2.3", "127.1.2.3", "")),
        ("localhost:5000/cache/", ("http", "localhost:5000/cache", "localhost:5000", "cache")),
        ("localhost", ("http", "localhost", "localhost", "")),
        ("[::1]:5000/a/b", ("http", "[::1]:5000/a/b", "[::1]:5000", "a/b")),
        ("registry.example.com/team", ("https", "registry.example.com/team", "registry.example.com", "team")),
        ("10.0.0.1:5000", ("https", "10.0.0.1:5000", "10.0.0.1:5000", "")),
        ("http://registry.example.com:5000", ("http", "registry.example.com:5000", "registry.example.com:5000", "")),
        ("https://127.0.0.1:5000/c", ("https", "127.0.0.1:5000/c", "127.0.0.1:5000", "c")),
        ("localhost.example.com", ("https", "localhost.example.com", "localhost.example.com", "")),
    ],
)
def test_parse_address(address: str, expected: tuple[str, str, str, str]) -> None:
    assert parse_address(address) == expected


def test_address_and_url() -> None:
    registry = Registry("http://127.0.0.1:5000/cache/")
    assert registry.address == "127.0.0.1:5000/cache"
    assert registry.url == "http://127.0.0.1:5000"
    assert Registry("registry.example.com/org").url == "https://registry.example.com"
    with pytest.raises(ValueError, match="not a registry address"):
        Registry("https:///")


@pytest.mark.parametrize(
    ("address", "repository", "remote"),
    [
        ("127.0.0.1:5000/cache", "registry.example.com/org/base", "cache/org/base"),
        ("127.0.0.1:5000", "company/base", "company/base"),
        ("127.0.0.1:5000/cache", "company/base", "cache/company/base"),
        ("127.0.0.1:5000/a/b", "base", "a/b/base"),
        ("127.0.0.1:5000", "localhost/base", "base"),
        ("127.0.0.1:5000", "localhost:5000/team/base", "team/base"),
        ("127.0.0.1:5000", f"{INDEX_NAME}/library/debian", "library/debian"),
        ("127.0.0.1:5000", "localhost", "localhost"),  # a lone component is a name, never a host
    ],
)
def test_remote_repository(address: str, repository: str, remote: str) -> None:
    assert Registry(address).remote_repository(repository) == remote


def test_invalid_names_are_refused() -> None:
    registry = Registry("127.0.0.1:5000")
    with pytest.raises(ValueError, match="repository"):
        registry.remote_repository("Company/Base")
    with pytest.raises(ValueError, match="tag"):
        registry.lookup("company/base", "../blobs")


def test_reference() -> None:
    assert Registry("127.0.0.1:5000/cache").reference("company/base", "key-abc") == (
        "127.0.0.1:5000/cache/company/base:key-abc"
    )
    assert (
        Registry("http://localhost:5000").reference("registry.example.com/org/app", "1.0")
        == "localhost:5000/org/app:1.0"
    )


def test_importing_the_module_does_not_import_requests() -> None:
    code = "import sys, orchestrator.registry.client; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- index documents ---------------------------------------------------------------------------


def test_index_document_is_deterministic_and_sorted_by_platform() -> None:
    images = [image("linux/arm64"), image("linux/amd64"), image("linux/arm/v7")]
    body = index_document(images)
    assert body == index_document(list(reversed(images)))
    assert b" " not in body
    document = json.loads(body)
    assert list(document) == ["manifests", "mediaType", "schemaVersion"]  # sorted keys
    assert document["mediaType"] == OCI_INDEX
    assert document["schemaVersion"] == 2
    assert [m["platform"] for m in document["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "linux", "architecture": "arm64"},
    ]
    first = document["manifests"][0]
    assert first == {
        "mediaType": DOCKER_MANIFEST,
        "digest": sha256(b"linux/amd64"),
        "size": 100,
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    assert body == json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_index_document_refuses_two_images_for_one_platform_and_indexes() -> None:
    with pytest.raises(ValueError, match="two images for linux/amd64"):
        index_document([image("linux/amd64"), image("linux/amd64", digest=sha256(b"other"))])
    with pytest.raises(ValueError, match="not a single-platform image"):
        index_document([image("")])
    with pytest.raises(ValueError, match="at least one image"):
        index_document([])
    once = index_document([image("linux/amd64")])
    assert index_document([image("linux/amd64"), image("linux/amd64")]) == once  # the same image twice: one entry


def test_remote_images_are_hashable() -> None:
    assert len({image("linux/amd64"), image("linux/amd64"), image("linux/arm64")}) == 2


def test_put_index_and_tag_manifest_refuse_images_of_another_repository() -> None:
    with Registry("127.0.0.1:1/cache") as registry:  # nothing listens: the check comes first
        with pytest.raises(ValueError, match="cache/other"):
            registry.put_index("app", "1.0", [image("linux/amd64"), image("linux/arm64", repository="cache/other")])
        with pytest.raises(ValueError, match="cache/other"):
            registry.tag_manifest("app", image("linux/amd64", repository="cache/other"), "1.0")


# --- credentials -------------------------------------------------------------------------------


def write_auths(path: Path, auths: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"auths": auths}))
    return path


def encoded(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_read_credentials(tmp_path: Path) -> None:
    path = write_auths(
        tmp_path / "config.json",
        {
            "https://reg.example.com": {"auth": encoded("alice", "pa:ss")},
            "http://127.0.0.1:5000/v2/": {"auth": encoded("bob", "secret")},
            "plain.example.com": {"username": "carol", "password": "pw"},
            INDEX_URL: {"auth": encoded("dave", "hub")},
            "broken.example.com": {"auth": "!!!"},
        },
    )
    found = read_credentials("reg.example.com", path)
    assert found is not None and (found.username, found.password) == ("alice", "pa:ss")
    found = read_credentials("127.0.0.1:5000", path)
    assert found is not None and found.username == "bob"
    found = read_credentials("plain.example.com", path)
    assert found is not None and found.password == "pw"
    found = read_credentials(INDEX_NAME, path)
    assert found is not None and found.username == "dave"
    assert read_credentials("broken.example.com", path) is None
    assert read_credentials("other.example.com", path) is None
    assert read_credentials("reg.example.com", tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RegistryError, match=r"bad\.json"):
        read_credentials("reg.example.com", tmp_path / "bad.json")


def test_default_auth_file_follows_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_auths(tmp_path / "config.json", {"reg.example.com": {"auth": encoded("eve", "x")}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    found = read_credentials("reg.example.com")
    assert found is not None and found.username == "eve"


# --- a real registry ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry 2.8 running for this module's tests."""
    if registry_binary() is None:
        message = "docker-registry is not installed (apt-get install docker-registry)"
        if os.environ.get("CI"):
            pytest.fail(f"the registry tests need it and CI is set: {message}")
        pytest.skip(message)
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture
def registry(registry_address: str) -> Iterator[Registry]:
    with Registry(registry_address) as client:
        yield client


@pytest.fixture
def name() -> str:
    """A repository of its own for each test: ``test/<random>``."""
    return f"test/r{uuid.uuid4().hex[:12]}"


class Pusher:
    """Puts images into a registry over plain HTTP: blobs by monolithic upload, then a manifest."""

    def __init__(self, address: str) -> None:
        import requests

        self.base = f"http://{address}/v2"
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def blob(self, repository: str, data: bytes) -> str:
        digest = sha256(data)
        with self.session.post(f"{self.base}/{repository}/blobs/uploads/", timeout=10) as started:
            assert started.status_code == 202, started.text
            location = started.headers["Location"]
        headers = {"Content-Type": "application/octet-stream"}
        with self.session.put(location, params={"digest": digest}, data=data, headers=headers, timeout=10) as done:
            assert done.status_code == 201, done.text
        return digest

    def manifest(self, repository: str, tag: str, media_type: str, body: bytes) -> str:
        url = f"{self.base}/{repository}/manifests/{tag}"
        with self.session.put(url, data=body, headers={"Content-Type": media_type}, timeout=10) as response:
            assert response.status_code == 201, response.text
            assert response.headers["Docker-Content-Digest"] == sha256(body)
        return sha256(body)

    def image(
        self, repository: str, tag: str, *, platform: str = "linux/amd64", labels: dict[str, str] | None = None
    ) -> tuple[str, bytes]:
        """Push a one-layer image; its manifest's digest and bytes."""
        os_, architecture, *variant = platform.split("/")
        config: dict[str, Any] = {
            "os": os_,
            "architecture": architecture,
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        if variant:
            config["variant"] = variant[0]
        config_bytes = json.dumps(config).encode()
        layer = f"layer of {repository}:{tag} {uuid.uuid4()}".encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": CONFIG_TYPE,
                "size": len(config_bytes),
                "digest": self.blob(repository, config_bytes),
            },
            "layers": [{"mediaType": LAYER_TYPE, "size": len(layer), "digest": self.blob(repository, layer)}],
        }
        body = json.dumps(manifest, indent=3).encode()  # not canonical: the bytes must travel unchanged
        return self.manifest(repository, tag, DOCKER_MANIFEST, body), body

    def get(self, repository: str, reference: str, accept: str) -> tuple[int, str, bytes, str]:
        url = f"{self.base}/{repository}/manifests/{reference}"
        with self.session.get(url, headers={"Accept": accept}, timeout=10) as response:
            content_type = response.headers.get("Content-Type", "")
            return (
                response.status_code,
                content_type,
                response.content,
                response.headers.get("Docker-Content-Digest", ""),
            )


@pytest.fixture
def pusher(registry_address: str) -> Iterator[Pusher]:
    pusher = Pusher(registry_address)
    yield pusher
    pusher.close()


@pytest.mark.integration
def test_ping(registry: Registry) -> None:
    registry.ping()


@pytest.mark.integration
def test_lookup_hit(registry: Registry, pusher: Pusher, name: str) -> None:
    digest, body = pusher.image(name, "key-abc", platform="linux/arm/v7", labels={"org.orchestrator.key": "abc"})
    found = registry.lookup(name, "key-abc")
    assert found == RemoteImage(
        repository=name,
        tag="key-abc",
        digest=digest,
        media_type=DOCKER_MANIFEST,
        size=len(body),
        labels={"org.orchestrator.key": "abc"},
        platform="linux/arm/v7",
    )


@pytest.mark.integration
def test_lookup_through_a_prefix_drops_the_local_host(registry_address: str, pusher: Pusher, name: str) -> None:
    digest, _ = pusher.image(f"cache/{name}", "key-1", labels=None)  # config.Labels null
    with Registry(f"{registry_address}/cache") as registry:
        found = registry.lookup(f"registry.example.com/{name}", "key-1")
        assert registry.reference(f"registry.example.com/{name}", "key-1") == f"{registry_address}/cache/{name}:key-1"
    assert found is not None
    assert (found.repository, found.digest, found.platform, dict(found.labels)) == (
        f"cache/{name}",
        digest,
        "linux/amd64",
        {},
    )


@pytest.mark.integration
def test_lookup_miss(registry: Registry, pusher: Pusher, name: str) -> None:
    pusher.image(name, "present")
    assert registry.lookup(name, "absent") is None
    assert registry.lookup(f"{name}-unknown", "present") is None


@pytest.mark.integration
def test_lookup_many(registry: Registry, pusher: Pusher, name: str) -> None:
    digests = {tag: pusher.image(name, tag, labels={"tag": tag})[0] for tag in ("a", "b", "c")}
    wanted = [(name, "a"), (name, "x"), (name, "b"), (f"{name}-none", "a"), (name, "c"), (name, "a")]
    found = registry.lookup_many(wanted, workers=3)
    assert set(found) == set(wanted)
    assert found[(name, "x")] is None
    assert found[(f"{name}-none", "a")] is None
    for tag, digest in digests.items():
        hit = found[(name, tag)]
        assert hit is not None and hit.digest == digest and hit.labels == {"tag": tag}
    assert registry.lookup_many([]) == {}


@pytest.mark.integration
def test_tag_manifest(registry: Registry, pusher: Pusher, name: str) -> None:
    digest, body = pusher.image(name, "key-abc", labels={"k": "v"})
    source = registry.lookup(name, "key-abc")
    assert source is not None
    assert registry.tag_manifest(name, source, "1.0") == digest
    tagged = registry.lookup(name, "1.0")
    assert tagged is not None
    assert (tagged.digest, tagged.tag, tagged.labels, tagged.platform) == (digest, "1.0", {"k": "v"}, "linux/amd64")
    assert registry.manifest_bytes(name, "1.0") == (DOCKER_MANIFEST, body, digest)
    assert registry.manifest_bytes(name, digest) == (DOCKER_MANIFEST, body, digest)


@pytest.mark.integration
def test_put_index(registry: Registry, pusher: Pusher, name: str) -> None:
    for platform in ("linux/arm64", "linux/amd64"):
        pusher.image(name, "key-" + platform.replace("/", "-"), platform=platform)
    images = [registry.lookup(name, "key-linux-arm64"), registry.lookup(name, "key-linux-amd64")]
    assert all(images)
    digest = registry.put_index(name, "2.0", [i for i in images if i is not None])

    status, content_type, body, answered = pusher.get(name, "2.0", OCI_INDEX)
    assert (status, content_type, answered, sha256(body)) == (200, OCI_INDEX, digest, digest)
    document = json.loads(body)
    assert document["mediaType"] == OCI_INDEX
    by_platform = {m["platform"]["architecture"]: m for m in document["manifests"]}
    assert [m["platform"] for m in document["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64"},
    ]
    for found in images:
        assert found is not None
        entry = by_platform[found.platform.split("/")[1]]
        assert (entry["digest"], entry["size"], entry["mediaType"]) == (found.digest, found.size, DOCKER_MANIFEST)

    index = registry.lookup(name, "2.0")  # an index is found, but is not a single image
    assert index is not None
    assert (index.digest, index.media_type, index.platform, index.labels) == (digest, OCI_INDEX, "", {})
    assert registry.manifest_bytes(name, "2.0") == (OCI_INDEX, body, digest)


@pytest.mark.integration
def test_docker_manifest_list_is_reported_as_such(registry: Registry, pusher: Pusher, name: str) -> None:
    """distribution 2.8 swaps a manifest list for its linux/amd64 entry unless the client accepts lists."""
    amd64, amd64_body = pusher.image(name, "amd64")
    entry = {"mediaType": DOCKER_MANIFEST, "digest": amd64, "size": len(amd64_body)}
    listing = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [{**entry, "platform": {"os": "linux", "architecture": "amd64"}}],
    }
    digest = pusher.manifest(name, "multi", DOCKER_MANIFEST_LIST, json.dumps(listing).encode())
    assert pusher.get(name, "multi", DOCKER_MANIFEST)[3] == amd64  # what a single-image Accept gets
    found = registry.lookup(name, "multi")
    assert found is not None
    assert (found.digest, found.media_type, found.platform) == (digest, DOCKER_MANIFEST_LIST, "")


@pytest.mark.integration
def test_put_index_of_a_missing_manifest_is_refused_with_the_registrys_words(registry: Registry, name: str) -> None:
    with pytest.raises(RegistryError, match=r"HTTP 400 MANIFEST_BLOB_UNKNOWN") as raised:
        registry.put_index(name, "1.0", [image("linux/amd64", repository=name)])
    assert registry.address in str(raised.value)


# --- a registry that is down -------------------------------------------------------------------


def test_registry_down_lookup_is_unavailable_quickly() -> None:
    port = free_port()
    with Registry(f"127.0.0.1:{port}/cache") as registry:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match=rf"127\.0\.0\.1:{port}/cache.*Connection refused"):
            registry.lookup("app", "key-1")
        with pytest.raises(RegistryUnavailable, match="Connection refused"):
            registry.lookup_many([("app", f"key-{i}") for i in range(50)])
        with pytest.raises(RegistryUnavailable, match="Connection refused"):
            registry.ping()
        assert time.monotonic() - started < 5


def test_lookup_many_fails_fast_when_the_registry_does_not_answer() -> None:
    """A port that accepts connections and never answers: the first timeout stops the rest."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(128)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        with Registry(address, read_timeout=0.5) as registry:
            started = time.monotonic()
            with pytest.raises(RegistryUnavailable, match="timed out"):
                registry.lookup_many([("app", f"key-{i}") for i in range(40)], workers=4)  # 5 s one by one
            assert time.monotonic() - started < 3
            _wait_for_lookup_threads()


def _wait_for_lookup_threads() -> None:
    deadline = time.monotonic() + 10
    while any(t.name.startswith("registry") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)


# --- fake registries ---------------------------------------------------------------------------

Handler = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


@contextmanager
def fake_registry(handle: Handler) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """An HTTP server answering with ``handle``; yields its address and (method, path, Authorization) seen."""
    seen: list[tuple[str, str, str]] = []

    class RequestHandler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            seen.append((self.command, self.path, self.headers.get("Authorization", "")))
            status, headers, body = handle(self)
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-registry", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def errors_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


JSON = {"Content-Type": "application/json"}


def test_http_500_is_unavailable() -> None:
    def handle(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        return 500, JSON, errors_body("UNKNOWN", "storage exploded")

    with fake_registry(handle) as (address, _), Registry(address) as registry:
        with pytest.raises(RegistryUnavailable, match=rf"{address}.*HTTP 500 UNKNOWN storage exploded"):
            registry.lookup("app", "key-1")
        with pytest.raises(RegistryUnavailable, match="HTTP 500"):
            registry.lookup_many([("app", "a"), ("app", "b")])


def test_http_429_is_unavailable_and_403_is_an_error() -> None:
    def handle(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if request.command == "PUT":
            return 403, JSON, errors_body("DENIED", "requested access to the resource is denied")
        return 429, JSON, errors_body("TOOMANYREQUESTS", "slow down")

    with fake_registry(handle) as (address, _), Registry(address) as registry:
        with pytest.raises(RegistryUnavailable, match="HTTP 429 TOOMANYREQUESTS slow down"):
            registry.lookup("app", "key-1")
        with pytest.raises(RegistryError, match=r"refused storing the manifest app:1\.0: HTTP 403 DENIED requested"):
            registry.put_index("app", "1.0", [image("linux/amd64", repository="app")])


class FakeImage:
    """A manifest and its config blob, as a fake registry serves them."""

    def __init__(self) -> None:
        self.config = json.dumps({"os": "linux", "architecture": "arm64", "config": {"Labels": {"a": "b"}}}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "size": len(self.config), "digest": sha256(self.config)},
            "layers": [],
        }
        self.manifest = json.dumps(manifest).encode()

    def serve(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(request.path).path
        if path == "/v2/":
            return 200, JSON, b"{}"
        if path == "/v2/app/manifests/key-1":
            return 200, {"Content-Type": DOCKER_MANIFEST}, self.manifest  # no Docker-Content-Digest
        if path == f"/v2/app/blobs/{sha256(self.config)}":
            return 200, {"Content-Type": "application/octet-stream"}, self.config
        return 404, JSON, errors_body("MANIFEST_UNKNOWN", "manifest unknown")

    def check(self, found: RemoteImage | None) -> None:
        assert found is not None
        assert (found.digest, found.platform, found.labels) == (sha256(self.manifest), "linux/arm64", {"a": "b"})


def test_basic_auth(tmp_path: Path) -> None:
    fake = FakeImage()
    expected = "Basic " + encoded("alice", "s3cret")

    def handle(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("Authorization") != expected:
            return 401, {"WWW-Authenticate": 'Basic realm="fake"', **JSON}, errors_body("UNAUTHORIZED", "who?")
        return fake.serve(request)

    with fake_registry(handle) as (address, seen):
        auth_file = write_auths(tmp_path / "config.json", {f"http://{address}": {"auth": encoded("alice", "s3cret")}})
        with Registry(address, auth_file=auth_file) as registry:
            registry.ping()
            fake.check(registry.lookup("app", "key-1"))
            assert registry.lookup("app", "key-2") is None
        # one challenge, then the credentials go along with every request
        assert [auth for _, _, auth in seen] == ["", expected, expected, expected, expected]

        wrong = write_auths(tmp_path / "wrong.json", {address: {"auth": encoded("alice", "nope")}})
        for auth in (wrong, tmp_path / "none.json"):
            with (
                Registry(address, auth_file=auth) as registry,
                pytest.raises(RegistryError, match=f"{address} refused .* HTTP 401 UNAUTHORIZED who"),
            ):
                registry.lookup("app", "key-1")


def bearer_server(
    fake: FakeImage, tokens: list[dict[str, list[str]]], expected_basic: str | None
) -> Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]:
    def handle(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(request.path)
        host = request.headers["Host"]
        if url.path == "/token":
            if expected_basic is not None and request.headers.get("Authorization") != expected_basic:
                return 401, JSON, errors_body("UNAUTHORIZED", "bad credentials")
            query = parse_qs(url.query)
            tokens.append(query)
            scope = query.get("scope", [""])[0]
            return 200, JSON, json.dumps({"token": f"token for {scope}", "expires_in": 300}).encode()
        scope = "repository:app:pull" if url.path.startswith("/v2/app/") else ""
        challenge = f'Bearer realm="http://{host}/token",service="fake-registry"'
        if scope:
            challenge += f',scope="{scope}"'
        if request.headers.get("Authorization") != f"Bearer token for {scope}":
            return 401, {"WWW-Authenticate": challenge, **JSON}, errors_body("UNAUTHORIZED", "token needed")
        return fake.serve(request)

    return handle


def test_bearer_auth_with_credentials(tmp_path: Path) -> None:
    fake = FakeImage()
    tokens: list[dict[str, list[str]]] = []
    with fake_registry(bearer_server(fake, tokens, "Basic " + encoded("bob", "pw"))) as (address, seen):
        auth_file = write_auths(tmp_path / "config.json", {address: {"auth": encoded("bob", "pw")}})
        with Registry(address, auth_file=auth_file) as registry:
            registry.ping()
            fake.check(registry.lookup("app", "key-1"))
            fake.check(registry.lookup("app", "key-1"))
        assert tokens == [
            {"service": ["fake-registry"]},
            {"service": ["fake-registry"], "scope": ["repository:app:pull"]},
        ]  # the token for a scope is asked once
        registry_requests = [(method, path) for method, path, _ in seen if not path.startswith("/token")]
        assert len(registry_requests) == 2 + 3 + 2  # /v2/ twice; manifest twice, blob; manifest, blob


def test_bearer_auth_anonymous_and_refused(tmp_path: Path) -> None:
    fake = FakeImage()
    tokens: list[dict[str, list[str]]] = []
    with (
        fake_registry(bearer_server(fake, tokens, None)) as (address, _),
        Registry(address, auth_file=tmp_path / "none.json") as registry,
    ):
        fake.check(registry.lookup("app", "key-1"))
    assert tokens == [{"service": ["fake-registry"], "scope": ["repository:app:pull"]}]
    with (
        fake_registry(bearer_server(fake, tokens, "Basic " + encoded("bob", "pw"))) as (address, _),
        Registry(address, auth_file=tmp_path / "none.json") as registry,
        pytest.raises(RegistryError, match=r"token.*HTTP 401 UNAUTHORIZED bad credentials"),
    ):
        registry.lookup("app", "key-1")
