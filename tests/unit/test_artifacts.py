"""OCI 1.1 artifacts (``orchestrator/registry/artifacts.py``) and the blob calls they need, against a fake.

The fake is an in-memory registry behind an ``http.server`` in a thread (as in ``test_registry.py``):
blobs by monolithic upload, manifests by tag or digest, and a referrers API that can be switched
off (as distribution 2.8 has none). The tests against a real registry are in
``tests/integration/test_registry_artifacts.py``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from orchestrator.registry.artifacts import (
    COSIGN_SIGNATURE_ANNOTATION,
    COSIGN_SIMPLESIGNING,
    EMPTY_DESCRIPTOR,
    EMPTY_MEDIA_TYPE,
    Descriptor,
    append_signature_layer,
    artifact_manifest,
    fetch_artifact,
    push_artifact,
    push_tagged_manifest,
    referrers,
    referrers_tag,
    signature_tag,
)
from orchestrator.registry.client import OCI_INDEX, OCI_MANIFEST, Registry, RegistryError
from tests.oci import sha256

SBOM = "application/spdx+json"
PROVENANCE = "application/vnd.in-toto+json"


@dataclass
class FakeOCIRegistry:
    """An in-memory registry of one repository; ``seen`` holds every (method, path) asked."""

    referrers_api: bool = False  # answer GET /referrers/ and OCI-Subject, as a 1.1 registry does
    filters: bool = True  # apply the artifactType filter (a registry MAY not)
    location: str = "relative"  # how uploads are located: "relative", "absolute", "bare" (no leading /), "elsewhere"
    tamper: bool = False  # serve other bytes for every blob
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest -> (media type, body)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest
    seen: list[tuple[str, str]] = field(default_factory=list)
    host: str = ""

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.seen.append((method, target))
        url = urlsplit(target)
        parts = url.path.split("/")
        if url.path.endswith("/blobs/uploads/") and method == "POST":
            session = uuid.uuid4().hex
            where = {
                "relative": f"{url.path}{session}?_state=s{session}",
                "absolute": f"http://{self.host}{url.path}{session}?_state=s{session}",
                "bare": session,
                "elsewhere": f"http://127.0.0.2:1{url.path}{session}",
            }[self.location]
            return 202, {"Location": where}, b""
        if "/blobs/uploads/" in url.path and method == "PUT":
            digest = parse_qs(url.query)["digest"][0]
            if sha256(body) != digest:
                return 400, {}, _errors("DIGEST_INVALID", "digest did not match")
            self.blobs[digest] = body
            return 201, {"Docker-Content-Digest": digest}, b""
        if parts[-2] == "blobs":
            data = self.blobs.get(parts[-1])
            if data is None:
                return 404, {}, _errors("BLOB_UNKNOWN", "blob unknown")
            return 200, {}, (b"other" if self.tamper else data) if method == "GET" else b""
        if parts[-2] == "manifests":
            return self._manifest(method, unquote(parts[-1]), headers, body)
        if parts[-2] == "referrers" and self.referrers_api:
            return self._referrers(parts[-1], parse_qs(url.query).get("artifactType", [None])[0])
        return 404, {"Content-Type": "text/plain"}, b"404 page not found\n"

    def _manifest(self, method: str, reference: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if method == "PUT":
            digest = sha256(body)
            self.manifests[digest] = (headers["Content-Type"], body)
            if not reference.startswith("sha256:"):
                self.tags[reference] = digest
            answer = {"Docker-Content-Digest": digest}
            subject = json.loads(body).get("subject")
            if self.referrers_api and subject:
                answer["OCI-Subject"] = subject["digest"]
            return 201, answer, b""
        digest = self.tags.get(reference, reference)
        if digest not in self.manifests:
            return 404, {}, _errors("MANIFEST_UNKNOWN", "manifest unknown")
        media_type, stored = self.manifests[digest]
        return 200, {"Content-Type": media_type, "Docker-Content-Digest": digest}, stored

    def _referrers(self, subject: str, artifact_type: str | None) -> tuple[int, dict[str, str], bytes]:
        entries = []
        for digest, (media_type, body) in sorted(self.manifests.items()):
            manifest = json.loads(body)
            if (manifest.get("subject") or {}).get("digest") != subject:
                continue
            if self.filters and artifact_type and manifest.get("artifactType") != artifact_type:
                continue
            entry = {"mediaType": media_type, "digest": digest, "size": len(body)}
            entry["artifactType"] = manifest.get("artifactType") or manifest["config"]["mediaType"]
            if manifest.get("annotations"):
                entry["annotations"] = manifest["annotations"]
            entries.append(entry)
        headers = {"Content-Type": OCI_INDEX}
        if self.filters and artifact_type:
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return 200, headers, json.dumps(index).encode()

    def puts(self, fragment: str) -> int:
        """How many PUTs went to a path containing ``fragment``."""
        return sum(1 for method, path in self.seen if method == "PUT" and fragment in path)


@contextmanager
def serving(fake: FakeOCIRegistry) -> Iterator[Registry]:
    """A Registry client of ``fake``, served on 127.0.0.1 for the test."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, answer = fake.handle(self.command, self.path, self.headers, body)
            self.send_response(status)
            for key, value in {"Content-Length": str(len(answer)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        do_GET = do_PUT = do_HEAD = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-oci-registry", daemon=True)
    thread.start()
    try:
        with Registry(fake.host) as registry:
            yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _errors(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


def _subject(registry: Registry, fake: FakeOCIRegistry) -> Descriptor:
    """A tiny image manifest in ``fake`` (tag ``v1``), to attach artifacts to."""
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}).encode()
    digest = registry.put_manifest("app", "v1", OCI_MANIFEST, body)
    return Descriptor(media_type=OCI_MANIFEST, digest=digest, size=len(body))


# --- pure ----------------------------------------------------------------------------------------


def test_empty_descriptor_is_the_digest_of_two_braces() -> None:
    assert dict(EMPTY_DESCRIPTOR) == {"mediaType": EMPTY_MEDIA_TYPE, "digest": sha256(b"{}"), "size": 2}


@pytest.mark.parametrize(
    ("digest", "tag"),
    [
        ("sha256:" + "a" * 64, "sha256-" + "a" * 64),
        ("sha512:" + "a" * 128, "sha512-" + "a" * 64),
        (  # the spec's own example of truncation and replacement
            "test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:"
            "alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation",
            "test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot",
        ),
    ],
)
def test_referrers_tag_follows_the_tag_schema(digest: str, tag: str) -> None:
    assert referrers_tag(digest) == tag


def test_signature_tag_is_cosigns() -> None:
    assert signature_tag("sha256:" + "b" * 64) == "sha256-" + "b" * 64 + ".sig"
    with pytest.raises(ValueError, match="not a digest"):
        referrers_tag("latest")


def test_artifact_manifest_is_exact_and_created_only_when_passed() -> None:
    subject = Descriptor(media_type=OCI_MANIFEST, digest="sha256:" + "c" * 64, size=7)
    body = artifact_manifest(
        subject=subject, artifact_type=SBOM, payload=b"sbom", payload_media_type=SBOM, annotations={}
    )
    assert json.loads(body) == {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": sha256(b"{}"), "size": 2},
        "layers": [{"mediaType": SBOM, "digest": sha256(b"sbom"), "size": 4}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "c" * 64, "size": 7},
    }
    dated = artifact_manifest(
        subject=subject,
        artifact_type=SBOM,
        payload=b"sbom",
        payload_media_type=SBOM,
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )
    assert json.loads(dated)["annotations"] == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}


# --- blobs and manifests -------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["relative", "absolute", "bare"])
def test_push_blob_uploads_to_the_location_keeping_its_query(location: str) -> None:
    fake = FakeOCIRegistry(location=location)
    with serving(fake) as registry:
        digest = registry.push_blob("app", b"hello")
        assert registry.blob("app", digest) == b"hello"
    assert digest == sha256(b"hello")
    assert fake.blobs == {digest: b"hello"}
    ((_, upload),) = [(m, p) for m, p in fake.seen if m == "PUT"]
    assert upload.startswith("/v2/app/blobs/uploads/")
    if location != "bare":
        assert "?_state=s" in upload and upload.endswith("&digest=sha256%3A" + digest[7:])


def test_push_blob_skips_a_blob_the_registry_has() -> None:
    fake = FakeOCIRegistry(blobs={sha256(b"there"): b"there"})
    with serving(fake) as registry:
        registry.push_blob("app", b"there")
    assert [method for method, _ in fake.seen] == ["HEAD"]


def test_push_blob_refuses_an_upload_location_on_another_host() -> None:
    with serving(FakeOCIRegistry(location="elsewhere")) as registry, pytest.raises(RegistryError, match="another host"):
        registry.push_blob("app", b"data")


def test_blob_with_other_content_is_an_error() -> None:
    fake = FakeOCIRegistry(blobs={sha256(b"data"): b"data"}, tamper=True)
    with serving(fake) as registry, pytest.raises(RegistryError, match="other content"):
        registry.blob("app", sha256(b"data"))


def test_put_manifest_by_digest_must_be_its_own_digest() -> None:
    with serving(FakeOCIRegistry()) as registry:
        body = b'{"schemaVersion":2}'
        assert registry.put_manifest("app", sha256(body), OCI_MANIFEST, body) == sha256(body)
        assert registry.manifest_json("app", sha256(body)) == {"schemaVersion": 2}
        assert registry.manifest_json("app", "missing") is None
        with pytest.raises(ValueError, match="not sha256"):
            registry.put_manifest("app", sha256(b"else"), OCI_MANIFEST, body)


# --- artifacts without the referrers API (distribution 2.8) --------------------------------------


def test_push_artifact_without_referrers_api_keeps_the_referrers_tag() -> None:
    fake = FakeOCIRegistry()
    with serving(fake) as registry:
        subject = _subject(registry, fake)
        sbom = push_artifact(
            registry,
            "app",
            subject=subject,
            artifact_type=SBOM,
            payload=b'{"spdxVersion":"SPDX-2.3"}',
            payload_media_type=SBOM,
            annotations={"org.example.format": "spdx"},
        )
        provenance = push_artifact(
            registry,
            "app",
            subject=subject,
            artifact_type=PROVENANCE,
            payload=b'{"_type":"https://in-toto.io/Statement/v1"}',
            payload_media_type=PROVENANCE,
            annotations={},
        )
        found = referrers(registry, "app", subject.digest)
        only_sbom = referrers(registry, "app", subject.digest, SBOM)
        manifest, payload = fetch_artifact(registry, "app", sbom)
    index_digest = fake.tags[referrers_tag(subject.digest)]
    media_type, body = fake.manifests[index_digest]
    index = json.loads(body)
    assert media_type == OCI_INDEX and index["mediaType"] == OCI_INDEX
    assert [entry["digest"] for entry in index["manifests"]] == sorted([sbom, provenance])
    assert sorted(((r.digest, r.artifact_type, dict(r.annotations)) for r in found), key=lambda t: t[0]) == sorted(
        [(sbom, SBOM, {"org.example.format": "spdx"}), (provenance, PROVENANCE, {})], key=lambda t: t[0]
    )
    assert [r.digest for r in only_sbom] == [sbom]
    assert manifest["subject"]["digest"] == subject.digest and payload == b'{"spdxVersion":"SPDX-2.3"}'
    assert sha256(b"{}") in fake.blobs


def test_pushing_the_same_artifact_twice_lists_it_once_and_rewrites_nothing() -> None:
    fake = FakeOCIRegistry()
    with serving(fake) as registry:
        subject = _subject(registry, fake)
        kwargs: dict[str, Any] = {
            "subject": subject,
            "artifact_type": SBOM,
            "payload": b"sbom",
            "payload_media_type": SBOM,
            "annotations": {},
        }
        first = push_artifact(registry, "app", **kwargs)
        second = push_artifact(registry, "app", **kwargs)
        assert first == second
        assert [r.digest for r in referrers(registry, "app", subject.digest)] == [first]
    assert fake.puts(referrers_tag(subject.digest)) == 1


def test_referrers_of_a_subject_without_any_is_empty() -> None:
    with serving(FakeOCIRegistry()) as registry:
        assert referrers(registry, "app", "sha256:" + "d" * 64) == []


def test_a_referrers_tag_that_is_not_an_index_is_refused_on_push_and_ignored_on_read() -> None:
    fake = FakeOCIRegistry()
    with serving(fake) as registry:
        subject = _subject(registry, fake)
        registry.put_manifest("app", referrers_tag(subject.digest), OCI_MANIFEST, b'{"schemaVersion":2,"layers":[]}')
        with pytest.raises(RegistryError, match="is not an OCI image index"):
            push_artifact(
                registry,
                "app",
                subject=subject,
                artifact_type=SBOM,
                payload=b"x",
                payload_media_type=SBOM,
                annotations={},
            )
        assert referrers(registry, "app", subject.digest) == []


# --- artifacts with the referrers API ------------------------------------------------------------


def test_push_artifact_with_referrers_api_writes_no_tag_and_lists_through_the_api() -> None:
    fake = FakeOCIRegistry(referrers_api=True)
    with serving(fake) as registry:
        subject = _subject(registry, fake)
        sbom = push_artifact(
            registry,
            "app",
            subject=subject,
            artifact_type=SBOM,
            payload=b"sbom",
            payload_media_type=SBOM,
            annotations={"a": "b"},
        )
        push_artifact(
            registry,
            "app",
            subject=subject,
            artifact_type=PROVENANCE,
            payload=b"prov",
            payload_media_type=PROVENANCE,
            annotations={},
        )
        found = referrers(registry, "app", subject.digest, SBOM)
    assert referrers_tag(subject.digest) not in fake.tags
    assert [(r.digest, r.artifact_type, dict(r.annotations)) for r in found] == [(sbom, SBOM, {"a": "b"})]
    assert ("GET", f"/v2/app/referrers/{subject.digest}?artifactType=application%2Fspdx%2Bjson") in fake.seen


def test_referrers_filters_again_when_the_registry_ignores_the_filter() -> None:
    fake = FakeOCIRegistry(referrers_api=True, filters=False)
    with serving(fake) as registry:
        subject = _subject(registry, fake)
        for artifact_type in (SBOM, PROVENANCE):
            push_artifact(
                registry,
                "app",
                subject=subject,
                artifact_type=artifact_type,
                payload=artifact_type.encode(),
                payload_media_type=artifact_type,
                annotations={},
            )
        assert [r.artifact_type for r in referrers(registry, "app", subject.digest, PROVENANCE)] == [PROVENANCE]
        assert [r.artifact_type for r in referrers(registry, "app", subject.digest)] == sorted([SBOM, PROVENANCE])


def test_fetch_artifact_with_a_tampered_payload_is_an_error() -> None:
    fake = FakeOCIRegistry()
    with serving(fake) as registry:
        subject = _subject(registry, fake)
        digest = push_artifact(
            registry, "app", subject=subject, artifact_type=SBOM, payload=b"x", payload_media_type=SBOM, annotations={}
        )
        fake.tamper = True
        with pytest.raises(RegistryError, match="other content"):
            fetch_artifact(registry, "app", digest)


# --- cosign signatures ---------------------------------------------------------------------------


def test_signatures_are_layers_of_one_image_at_the_sig_tag() -> None:
    fake = FakeOCIRegistry()
    subject = "sha256:" + "e" * 64
    with serving(fake) as registry:
        first = append_signature_layer(
            registry, "app", subject, payload=b"payload", annotations={COSIGN_SIGNATURE_ANNOTATION: "sig-1"}
        )
        again = append_signature_layer(
            registry, "app", subject, payload=b"payload", annotations={COSIGN_SIGNATURE_ANNOTATION: "sig-1"}
        )
        second = append_signature_layer(
            registry, "app", subject, payload=b"payload", annotations={COSIGN_SIGNATURE_ANNOTATION: "sig-2"}
        )
        manifest = registry.manifest_json("app", signature_tag(subject))
        config = registry.image_config("app", signature_tag(subject))
    assert first == again != second == fake.tags[signature_tag(subject)]
    assert manifest is not None
    assert [layer["annotations"][COSIGN_SIGNATURE_ANNOTATION] for layer in manifest["layers"]] == ["sig-1", "sig-2"]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {COSIGN_SIMPLESIGNING}
    assert config is not None and config["rootfs"]["diff_ids"] == [sha256(b"payload")] * 2


def test_push_tagged_manifest_pushes_blobs_then_the_manifest() -> None:
    fake = FakeOCIRegistry()
    with serving(fake) as registry:
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [{"digest": sha256(b"l"), "size": 1}]}
        digest = push_tagged_manifest(registry, "app", "signed", manifest, [("text/plain", b"l")])
        assert registry.manifest_json("app", "signed") == manifest
    assert fake.tags["signed"] == digest and sha256(b"l") in fake.blobs
