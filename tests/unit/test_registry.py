"""The registry client: names and index documents (pure), then against registries down and tiny fakes.

The fakes are ``http.server``s in a thread: one answering 500, one demanding Basic credentials, one
demanding a Bearer token from its own ``/token`` realm. The tests against a real registry are in
``tests/integration/test_registry.py``.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from docker.auth import INDEX_NAME

from orchestrator.registry.client import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    Registry,
    RegistryError,
    RegistryUnavailable,
    RemoteImage,
    index_document,
    parse_address,
)
from tests.oci import CONFIG_TYPE, image, sha256
from tests.registry_server import free_port

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
