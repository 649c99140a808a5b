"""Signing and verifying images in a registry (``pipeline/supply_sign.py``, ``supply_verify.py``), against
the in-memory OCI registry of ``test_artifacts.py`` (a registry without the referrers API, as
distribution 2.8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator.errors import UsageError
from orchestrator.pipeline.supply_sign import (
    PROVENANCE_ARTIFACT,
    SBOM_ARTIFACT,
    RegistryRef,
    sign_digest,
    sign_reference,
)
from orchestrator.pipeline.supply_verify import verify_reference
from orchestrator.registry.artifacts import Descriptor, push_artifact, signature_tag
from orchestrator.registry.client import OCI_INDEX, OCI_MANIFEST, Registry
from orchestrator.supply.signing import SigningKey, load_private_key
from tests.unit.test_artifacts import FakeOCIRegistry, serving


def _key(tmp_path: Path, name: str = "cosign.key") -> SigningKey:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / name).write_bytes(pem)
    return load_private_key(tmp_path / name)


def _image(registry: Registry, tag: str, content: str = "a") -> Descriptor:
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": content}, "layers": []}
    ).encode()
    digest = registry.put_manifest("app", tag, OCI_MANIFEST, body)
    return Descriptor(media_type=OCI_MANIFEST, digest=digest, size=len(body))


def _ref(registry: Registry, tag: str) -> RegistryRef:
    return RegistryRef.parse(f"{registry.address}/app:{tag}")


def _provenance(registry: Registry, subject: Descriptor) -> str:
    statement = {"subject": [{"name": "x", "digest": {"sha256": subject.digest.removeprefix("sha256:")}}]}
    return push_artifact(
        registry,
        "app",
        subject=subject,
        artifact_type=PROVENANCE_ARTIFACT,
        payload=json.dumps(statement).encode(),
        payload_media_type=PROVENANCE_ARTIFACT,
        annotations={},
    )


def test_a_reference_must_name_its_registry() -> None:
    ref = RegistryRef.parse("127.0.0.1:5000/company/base:1.0")
    assert (ref.address, ref.repository, ref.reference, ref.name) == (
        "127.0.0.1:5000",
        "company/base",
        "1.0",
        "127.0.0.1:5000/company/base",
    )
    assert RegistryRef.parse("localhost/base").reference == "latest"
    with pytest.raises(UsageError, match="names no registry"):
        RegistryRef.parse("company/base:1.0")


def test_signed_image_verifies_then_fails_when_the_tag_moves(tmp_path: Path) -> None:
    key = _key(tmp_path)
    with serving(FakeOCIRegistry()) as registry:
        image = _image(registry, "1.0")
        digest, signed = sign_reference(registry, _ref(registry, "1.0"), key)
        assert digest == image.digest and signed == [image.digest]
        verdict = verify_reference(registry, _ref(registry, "1.0"), key.public())
        assert verdict.ok and verdict.message == f"verified {registry.address}/app:1.0@{digest} (signature)"

        moved = _image(registry, "1.0", content="b")
        verdict = verify_reference(registry, _ref(registry, "1.0"), key.public())
        assert not verdict.ok
        assert verdict.message == f"no signature for {registry.address}/app:1.0@{moved.digest}"


def test_a_signature_copied_to_another_image_does_not_match(tmp_path: Path) -> None:
    key = _key(tmp_path)
    with serving(FakeOCIRegistry()) as registry:
        old = _image(registry, "old")
        sign_digest(registry, "app", old.digest, key)
        new = _image(registry, "1.0", content="b")
        media_type, body, _ = registry.manifest_bytes("app", signature_tag(old.digest))
        registry.put_manifest("app", signature_tag(new.digest), media_type, body)
        verdict = verify_reference(registry, _ref(registry, "1.0"), key.public())
    assert not verdict.ok
    assert verdict.message.startswith(f"signature does not match {registry.address}/app:1.0@{new.digest}")
    assert "signed another image" in verdict.message


def test_another_key_does_not_verify(tmp_path: Path) -> None:
    with serving(FakeOCIRegistry()) as registry:
        image = _image(registry, "1.0")
        sign_digest(registry, "app", image.digest, _key(tmp_path))
        verdict = verify_reference(registry, _ref(registry, "1.0"), _key(tmp_path, "other.key").public())
    assert not verdict.ok and "signature does not match" in verdict.message
    assert "none of its 1 signatures verifies" in verdict.message


def test_signing_twice_adds_no_second_signature(tmp_path: Path) -> None:
    key = _key(tmp_path)
    with serving(FakeOCIRegistry()) as registry:
        image = _image(registry, "1.0")
        assert sign_digest(registry, "app", image.digest, key)
        assert not sign_digest(registry, "app", image.digest, key)
        manifest = registry.manifest_json("app", signature_tag(image.digest))
    assert manifest is not None and len(manifest["layers"]) == 1


def test_required_attestation_missing_unsigned_then_signed(tmp_path: Path) -> None:
    key = _key(tmp_path)
    with serving(FakeOCIRegistry()) as registry:
        image = _image(registry, "1.0")
        sign_digest(registry, "app", image.digest, key)
        ref = _ref(registry, "1.0")
        verdict = verify_reference(registry, ref, key.public(), ["provenance"])
        assert verdict.message == f"no provenance attestation for {registry.address}/app:1.0@{image.digest}"

        _provenance(registry, image)
        verdict = verify_reference(registry, ref, key.public(), ["provenance"])
        assert not verdict.ok and "1 attached, none signed by" in verdict.message

        sign_reference(registry, ref, key)  # signs the attestations attached too
        assert verify_reference(registry, ref, key.public(), ["provenance"]).ok
        verdict = verify_reference(registry, ref, key.public(), ["provenance", "sbom"])
        assert verdict.message.startswith("no sbom attestation for")
        assert SBOM_ARTIFACT != PROVENANCE_ARTIFACT


def test_an_index_needs_attestations_on_every_platform(tmp_path: Path) -> None:
    key = _key(tmp_path)
    with serving(FakeOCIRegistry()) as registry:
        amd64, arm64 = _image(registry, "amd64", "a"), _image(registry, "arm64", "b")
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64.document(), arm64.document()]}
        index_digest = registry.put_manifest("app", "1.0", OCI_INDEX, json.dumps(index).encode())
        _provenance(registry, amd64)
        _, signed = sign_reference(registry, _ref(registry, "1.0"), key)
        assert len(signed) == 4  # the index, two platforms, one attestation
        verdict = verify_reference(registry, _ref(registry, "1.0"), key.public(), ["provenance"])
    assert not verdict.ok
    assert verdict.message == (
        f"no provenance attestation for {registry.address}/app:1.0@{index_digest} "
        f"(its platform manifest {arm64.digest})"
    )
