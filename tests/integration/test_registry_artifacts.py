"""OCI 1.1 artifacts against a real registry: Debian's ``docker-registry`` (distribution 2.8).

Distribution 2.8 stores a manifest's ``subject`` byte for byte but has no referrers API: it answers
no ``OCI-Subject`` and 404 to ``/v2/<name>/referrers/<digest>``, so these tests go through the
referrers tag schema. The image the artifacts are attached to is made here, over HTTP, with the
client's own ``push_blob``/``put_manifest``: no Docker Engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from orchestrator.registry.artifacts import (
    COSIGN_SIGNATURE_ANNOTATION,
    COSIGN_SIMPLESIGNING,
    EMPTY_MEDIA_TYPE,
    Descriptor,
    append_signature_layer,
    fetch_artifact,
    push_artifact,
    referrers,
    referrers_tag,
    signature_tag,
    subject_of,
)
from orchestrator.registry.client import OCI_INDEX, OCI_MANIFEST, Registry
from tests.oci import sha256

pytestmark = pytest.mark.integration

REPOSITORY = "team/app"
SBOM = "application/spdx+json"
PROVENANCE = "application/vnd.in-toto+json"
SBOM_BYTES = b'{"spdxVersion":"SPDX-2.3","name":"app"}'
PROVENANCE_BYTES = b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1"}'


@pytest.fixture
def client(registry: str) -> Iterator[Registry]:
    with Registry(registry) as client:
        yield client


def push_image(client: Registry, tag: str) -> Descriptor:
    """A tiny hand-made OCI image (config + one layer) tagged ``tag``: its manifest's descriptor."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = f"the only layer of {tag}".encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": client.push_blob(REPOSITORY, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": client.push_blob(REPOSITORY, layer),
                "size": len(layer),
            }
        ],
    }
    body = json.dumps(manifest).encode()
    digest = client.put_manifest(REPOSITORY, tag, OCI_MANIFEST, body)
    assert subject_of(client, REPOSITORY, tag) == Descriptor(media_type=OCI_MANIFEST, digest=digest, size=len(body))
    return Descriptor(media_type=OCI_MANIFEST, digest=digest, size=len(body))


def push_sbom_and_provenance(client: Registry, subject: Descriptor) -> tuple[str, str]:
    sbom = push_artifact(
        client,
        REPOSITORY,
        subject=subject,
        artifact_type=SBOM,
        payload=SBOM_BYTES,
        payload_media_type=SBOM,
        annotations={"org.opencontainers.image.created": "2024-05-01T12:00:00Z", "org.example.format": "spdx"},
    )
    provenance = push_artifact(
        client,
        REPOSITORY,
        subject=subject,
        artifact_type=PROVENANCE,
        payload=PROVENANCE_BYTES,
        payload_media_type="application/vnd.in-toto+json",
        annotations={"org.example.builder": "orchestrator"},
    )
    return sbom, provenance


def test_distribution_2_8_keeps_the_subject_but_has_no_referrers_api(registry: str, client: Registry) -> None:
    subject = push_image(client, "v1")
    sbom, _ = push_sbom_and_provenance(client, subject)
    _, body, _ = client.manifest_bytes(REPOSITORY, sbom)
    assert json.loads(body)["subject"] == subject.document()
    assert client.referrers_api(REPOSITORY, subject.digest) is None
    with requests.get(f"http://{registry}/v2/{REPOSITORY}/referrers/{subject.digest}", timeout=10) as answer:
        assert answer.status_code == 404


def test_two_artifacts_are_listed_with_their_type_and_annotations(client: Registry) -> None:
    subject = push_image(client, "v1")
    sbom, provenance = push_sbom_and_provenance(client, subject)
    found = referrers(client, REPOSITORY, subject.digest)
    assert [(r.digest, r.artifact_type, dict(r.annotations), r.media_type) for r in found] == [
        (
            sbom,
            SBOM,
            {"org.opencontainers.image.created": "2024-05-01T12:00:00Z", "org.example.format": "spdx"},
            OCI_MANIFEST,
        ),
        (provenance, PROVENANCE, {"org.example.builder": "orchestrator"}, OCI_MANIFEST),
    ]
    assert all(r.size == len(client.manifest_bytes(REPOSITORY, r.digest)[1]) for r in found)
    assert [r.digest for r in referrers(client, REPOSITORY, subject.digest, SBOM)] == [sbom]
    assert [r.digest for r in referrers(client, REPOSITORY, subject.digest, PROVENANCE)] == [provenance]
    assert referrers(client, REPOSITORY, subject.digest, "application/vnd.example.none") == []


def test_payloads_round_trip(client: Registry) -> None:
    subject = push_image(client, "v1")
    sbom, provenance = push_sbom_and_provenance(client, subject)
    manifest, payload = fetch_artifact(client, REPOSITORY, sbom)
    assert payload == SBOM_BYTES
    assert manifest["artifactType"] == SBOM
    assert manifest["config"] == {"mediaType": EMPTY_MEDIA_TYPE, "digest": sha256(b"{}"), "size": 2}
    assert client.blob(REPOSITORY, sha256(b"{}")) == b"{}"
    assert fetch_artifact(client, REPOSITORY, provenance)[1] == PROVENANCE_BYTES


def test_the_referrers_tag_is_an_oci_index_listing_each_once(client: Registry) -> None:
    subject = push_image(client, "v1")
    sbom, provenance = push_sbom_and_provenance(client, subject)
    again, _ = push_sbom_and_provenance(client, subject)
    assert again == sbom
    tag = referrers_tag(subject.digest)
    assert tag == "sha256-" + subject.digest.removeprefix("sha256:")
    assert tag in client.tags(REPOSITORY)
    media_type, body, _ = client.manifest_bytes(REPOSITORY, tag)
    index = json.loads(body)
    assert media_type == OCI_INDEX and index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    assert sorted(entry["digest"] for entry in index["manifests"]) == sorted([sbom, provenance])
    assert {entry["digest"]: entry["artifactType"] for entry in index["manifests"]} == {
        sbom: SBOM,
        provenance: PROVENANCE,
    }
    assert len(referrers(client, REPOSITORY, subject.digest)) == 2


def test_a_subject_without_referrers_has_none(client: Registry) -> None:
    with_artifacts = push_image(client, "v1")
    push_sbom_and_provenance(client, with_artifacts)
    alone = push_image(client, "v2")
    assert referrers(client, REPOSITORY, alone.digest) == []
    assert referrers(client, "team/empty", alone.digest) == []  # no such repository at all


def test_cosign_signatures_round_trip_at_the_sig_tag(client: Registry) -> None:
    subject = push_image(client, "v1")
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": subject.digest}}}).encode()
    first = append_signature_layer(
        client, REPOSITORY, subject.digest, payload=payload, annotations={COSIGN_SIGNATURE_ANNOTATION: "MEUC-one"}
    )
    second = append_signature_layer(
        client, REPOSITORY, subject.digest, payload=payload, annotations={COSIGN_SIGNATURE_ANNOTATION: "MEUC-two"}
    )
    assert first != second
    tag = signature_tag(subject.digest)
    manifest = client.manifest_json(REPOSITORY, tag)
    assert manifest is not None
    assert [layer["annotations"][COSIGN_SIGNATURE_ANNOTATION] for layer in manifest["layers"]] == [
        "MEUC-one",
        "MEUC-two",
    ]
    assert all(layer["mediaType"] == COSIGN_SIMPLESIGNING for layer in manifest["layers"])
    assert client.blob(REPOSITORY, manifest["layers"][0]["digest"]) == payload
    assert client.manifest_bytes(REPOSITORY, tag)[2] == second
    assert (
        append_signature_layer(
            client, REPOSITORY, subject.digest, payload=payload, annotations={COSIGN_SIGNATURE_ANNOTATION: "MEUC-two"}
        )
        == second
    )
