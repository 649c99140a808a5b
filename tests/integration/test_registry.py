"""The registry client against a real registry: Debian's ``docker-registry`` (distribution 2.8).

The registry runs once for the module (``module_registry``, each test keeps to a repository of its
own) and is filled over HTTP by the tests themselves, without a Docker Engine.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.registry.client import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Registry,
    RegistryError,
    RemoteImage,
)
from tests.oci import CONFIG_TYPE, LAYER_TYPE, image, sha256

pytestmark = pytest.mark.integration


@pytest.fixture
def client(module_registry: str) -> Iterator[Registry]:
    """A client of this module's registry."""
    with Registry(module_registry) as client:
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
def pusher(module_registry: str) -> Iterator[Pusher]:
    pusher = Pusher(module_registry)
    yield pusher
    pusher.close()


def test_ping(client: Registry) -> None:
    client.ping()


def test_lookup_hit(client: Registry, pusher: Pusher, name: str) -> None:
    digest, body = pusher.image(name, "key-abc", platform="linux/arm/v7", labels={"org.orchestrator.key": "abc"})
    found = client.lookup(name, "key-abc")
    assert found == RemoteImage(
        repository=name,
        tag="key-abc",
        digest=digest,
        media_type=DOCKER_MANIFEST,
        size=len(body),
        labels={"org.orchestrator.key": "abc"},
        platform="linux/arm/v7",
    )


def test_lookup_through_a_prefix_drops_the_local_host(module_registry: str, pusher: Pusher, name: str) -> None:
    digest, _ = pusher.image(f"cache/{name}", "key-1", labels=None)  # config.Labels null
    with Registry(f"{module_registry}/cache") as registry:
        found = registry.lookup(f"registry.example.com/{name}", "key-1")
        assert registry.reference(f"registry.example.com/{name}", "key-1") == f"{module_registry}/cache/{name}:key-1"
    assert found is not None
    assert (found.repository, found.digest, found.platform, dict(found.labels)) == (
        f"cache/{name}",
        digest,
        "linux/amd64",
        {},
    )


def test_lookup_miss(client: Registry, pusher: Pusher, name: str) -> None:
    pusher.image(name, "present")
    assert client.lookup(name, "absent") is None
    assert client.lookup(f"{name}-unknown", "present") is None


def test_lookup_many(client: Registry, pusher: Pusher, name: str) -> None:
    digests = {tag: pusher.image(name, tag, labels={"tag": tag})[0] for tag in ("a", "b", "c")}
    wanted = [(name, "a"), (name, "x"), (name, "b"), (f"{name}-none", "a"), (name, "c"), (name, "a")]
    found = client.lookup_many(wanted, workers=3)
    assert set(found) == set(wanted)
    assert found[(name, "x")] is None
    assert found[(f"{name}-none", "a")] is None
    for tag, digest in digests.items():
        hit = found[(name, tag)]
        assert hit is not None and hit.digest == digest and hit.labels == {"tag": tag}
    assert client.lookup_many([]) == {}


def test_tag_manifest(client: Registry, pusher: Pusher, name: str) -> None:
    digest, body = pusher.image(name, "key-abc", labels={"k": "v"})
    source = client.lookup(name, "key-abc")
    assert source is not None
    assert client.tag_manifest(name, source, "1.0") == digest
    tagged = client.lookup(name, "1.0")
    assert tagged is not None
    assert (tagged.digest, tagged.tag, tagged.labels, tagged.platform) == (digest, "1.0", {"k": "v"}, "linux/amd64")
    assert client.manifest_bytes(name, "1.0") == (DOCKER_MANIFEST, body, digest)
    assert client.manifest_bytes(name, digest) == (DOCKER_MANIFEST, body, digest)


def test_put_index(client: Registry, pusher: Pusher, name: str) -> None:
    for platform in ("linux/arm64", "linux/amd64"):
        pusher.image(name, "key-" + platform.replace("/", "-"), platform=platform)
    images = [client.lookup(name, "key-linux-arm64"), client.lookup(name, "key-linux-amd64")]
    assert all(images)
    digest = client.put_index(name, "2.0", [i for i in images if i is not None])

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

    index = client.lookup(name, "2.0")  # an index is found, but is not a single image
    assert index is not None
    assert (index.digest, index.media_type, index.platform, index.labels) == (digest, OCI_INDEX, "", {})
    assert client.manifest_bytes(name, "2.0") == (OCI_INDEX, body, digest)


def test_docker_manifest_list_is_reported_as_such(client: Registry, pusher: Pusher, name: str) -> None:
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
    found = client.lookup(name, "multi")
    assert found is not None
    assert (found.digest, found.media_type, found.platform) == (digest, DOCKER_MANIFEST_LIST, "")


def test_put_index_of_a_missing_manifest_is_refused_with_the_registrys_words(client: Registry, name: str) -> None:
    with pytest.raises(RegistryError, match=r"HTTP 400 MANIFEST_BLOB_UNKNOWN") as raised:
        client.put_index(name, "1.0", [image("linux/amd64", repository=name)])
    assert client.address in str(raised.value)
