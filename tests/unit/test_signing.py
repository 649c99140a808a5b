"""Key-based, cosign-compatible signatures (orchestrator/supply/signing.py): keys, payload, manifest."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils

from orchestrator.errors import EXIT_USAGE, OrchestratorError
from orchestrator.supply.signing import (
    OCI_CONFIG,
    OCI_MANIFEST,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_MEDIA_TYPE,
    Signed,
    SigningError,
    check_payload,
    load_private_key,
    load_public_key,
    sign,
    signature_manifest,
    signature_tag,
    signatures_in,
    signatures_manifest,
    simple_signing_payload,
    verify_signature,
)

REPOSITORY = "127.0.0.1:5000/company/base"
DIGEST = "sha256:" + "d34db33f" * 8
PASSWORD_ENV = "ORCHESTRATOR_TEST_KEY_PASSWORD"


def _write_private(path: Path, key: object, *, password: bytes | None = None, fmt: str = "pkcs8") -> Path:
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    algorithm = serialization.NoEncryption() if password is None else serialization.BestAvailableEncryption(password)
    private_format = (
        serialization.PrivateFormat.PKCS8 if fmt == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, private_format, algorithm))
    return path


@pytest.fixture
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_unencrypted_pkcs8_key_signs_and_its_public_key_verifies(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey
) -> None:
    key = load_private_key(_write_private(tmp_path / "cosign.key", p256))
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    signature = sign(key, payload)
    assert verify_signature(key.public(), payload, signature)
    (tmp_path / "cosign.pub").write_bytes(key.public().pem())
    assert verify_signature(load_public_key(tmp_path / "cosign.pub"), payload, signature)


def test_signature_is_base64_der_ecdsa_sha256_that_cryptography_verifies(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey
) -> None:
    key = load_private_key(_write_private(tmp_path / "cosign.key", p256))
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    der = base64.b64decode(sign(key, payload), validate=True)
    r, s = utils.decode_dss_signature(der)  # raises unless it is an ASN.1 DER ECDSA signature
    assert r > 0 and s > 0
    p256.public_key().verify(der, payload, ec.ECDSA(hashes.SHA256()))


def test_tampered_payload_or_signature_does_not_verify(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    key = load_private_key(_write_private(tmp_path / "cosign.key", p256))
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    signature = sign(key, payload)
    other = simple_signing_payload(REPOSITORY, "sha256:" + "0" * 64)
    assert not verify_signature(key.public(), other, signature)
    assert not verify_signature(key.public(), payload, "not base64!")
    assert not verify_signature(key.public(), payload, base64.b64encode(b"\x30\x02garbage").decode())
    stranger = load_private_key(_write_private(tmp_path / "other.key", ec.generate_private_key(ec.SECP256R1())))
    assert not verify_signature(stranger.public(), payload, signature)


def test_sec1_ec_private_key_is_accepted(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    path = _write_private(tmp_path / "ec.pem", p256, fmt="sec1")
    assert b"BEGIN EC PRIVATE KEY" in path.read_bytes()
    key = load_private_key(path)
    assert verify_signature(key.public(), b"x", sign(key, b"x"))


def test_encrypted_pkcs8_key_reads_its_password_from_the_named_variable(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_private(tmp_path / "cosign.key", p256, password=b"s3cret-pw")
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in path.read_bytes()
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pw")
    key = load_private_key(path, PASSWORD_ENV)
    assert key.public().pem() == p256.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_wrong_password_names_the_variable_never_the_password(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_private(tmp_path / "cosign.key", p256, password=b"s3cret-pw")
    monkeypatch.setenv(PASSWORD_ENV, "wrong-guess")
    with pytest.raises(SigningError) as caught:
        load_private_key(path, PASSWORD_ENV)
    message = str(caught.value)
    assert f"${PASSWORD_ENV}" in message and "wrong password" in message
    assert "wrong-guess" not in message and "s3cret" not in message
    assert caught.value.exit_code == EXIT_USAGE and isinstance(caught.value, OrchestratorError)


def test_encrypted_key_without_its_password_variable_is_a_clear_error(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_private(tmp_path / "cosign.key", p256, password=b"s3cret-pw")
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(SigningError, match=rf"\${PASSWORD_ENV}.*is not set"):
        load_private_key(path, PASSWORD_ENV)
    with pytest.raises(SigningError, match="name the environment variable"):
        load_private_key(path)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "an RSA key (2048 bits)"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "an ECDSA key on secp384r1"),
    ],
    ids=["rsa", "p384"],
)
def test_keys_other_than_p256_are_refused(tmp_path: Path, make: object, words: str) -> None:
    assert callable(make)
    private = make()
    with pytest.raises(SigningError, match="ECDSA on P-256") as caught:
        load_private_key(_write_private(tmp_path / "key.pem", private))
    assert words in str(caught.value)
    (tmp_path / "key.pub").write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SigningError, match=r"ECDSA on P-256"):
        load_public_key(tmp_path / "key.pub")


def test_cosign_encrypted_key_is_refused_with_a_way_to_convert(tmp_path: Path) -> None:
    path = tmp_path / "cosign.key"
    path.write_text(
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )
    with pytest.raises(SigningError, match="cosign's own encrypted format") as caught:
        load_private_key(path, PASSWORD_ENV)
    assert "openssl genpkey" in str(caught.value) and caught.value.path == str(path)


def test_missing_or_garbage_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match=r"cannot read the key .*missing\.pem"):
        load_private_key(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("hello\n")
    with pytest.raises(SigningError, match="not a private key this reads: expected PKCS#8"):
        load_private_key(tmp_path / "junk.pem")
    with pytest.raises(SigningError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pem")


def test_payload_is_byte_for_byte_cosigns() -> None:
    # sigstore/sigstore pkg/signature/payload/payload_test.go TestMarshalCosign, "no claims", with our repository
    expected = (
        '{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/company/base"},'
        '"image":{"docker-manifest-digest":"sha256:d34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33f"},'
        '"type":"cosign container image signature"},"optional":null}'
    )
    assert simple_signing_payload(REPOSITORY, DIGEST) == expected.encode()


@pytest.mark.parametrize(
    ("reference", "digest"),
    [(REPOSITORY + ":1", DIGEST), (REPOSITORY + "@" + DIGEST, DIGEST), (REPOSITORY, "sha256:abc"), (REPOSITORY, "x")],
)
def test_payload_refuses_a_tagged_reference_or_a_bad_digest(reference: str, digest: str) -> None:
    with pytest.raises(ValueError):
        simple_signing_payload(reference, digest)


def test_check_payload_names_what_is_wrong() -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    assert check_payload(payload, DIGEST) is None
    assert check_payload(payload, DIGEST, REPOSITORY) is None
    assert "not sha256:0000" in str(check_payload(payload, "sha256:" + "0" * 64))
    assert "names '127.0.0.1:5000/company/base'" in str(check_payload(payload, DIGEST, "127.0.0.1:5000/other"))
    other_type = payload.replace(b"cosign container image signature", b"atomic container signature")
    assert "'atomic container signature'" in str(check_payload(other_type, DIGEST))
    assert check_payload(b"{not json", DIGEST) == "the payload is not a simple-signing document"
    assert check_payload(b"[]", DIGEST) == "the payload is not a simple-signing document"


def test_signature_tag_is_cosigns() -> None:
    assert signature_tag(DIGEST) == "sha256-" + "d34db33f" * 8 + ".sig"
    with pytest.raises(ValueError):
        signature_tag("sha512:" + "0" * 128)


def test_signature_manifest_is_an_oci_manifest_with_one_simplesigning_layer() -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    manifest, blobs = signature_manifest(payload, "c2lnbmF0dXJl")
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == OCI_MANIFEST
    (config_type, config_blob), (layer_type, layer_blob) = blobs
    assert (config_type, layer_type, layer_blob) == (OCI_CONFIG, SIMPLESIGNING_MEDIA_TYPE, payload)
    payload_digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    assert manifest["config"] == {
        "mediaType": OCI_CONFIG,
        "size": len(config_blob),
        "digest": "sha256:" + hashlib.sha256(config_blob).hexdigest(),
    }
    assert manifest["layers"] == [
        {
            "mediaType": SIMPLESIGNING_MEDIA_TYPE,
            "size": len(payload),
            "digest": payload_digest,
            "annotations": {SIGNATURE_ANNOTATION: "c2lnbmF0dXJl"},
        }
    ]
    assert config_blob == (
        b'{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],'
        b'"os":"","rootfs":{"type":"layers","diff_ids":["' + payload_digest.encode() + b'"]},"config":{}}'
    )
    assert signature_manifest(payload, "c2lnbmF0dXJl") == (manifest, blobs)  # deterministic


def test_signatures_in_reads_back_what_signature_manifest_wrote(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey
) -> None:
    key = load_private_key(_write_private(tmp_path / "cosign.key", p256))
    payloads = [simple_signing_payload(REPOSITORY, DIGEST), simple_signing_payload(REPOSITORY, "sha256:" + "1" * 64)]
    written = [Signed(p, sign(key, p)) for p in payloads]
    manifest, blobs = signatures_manifest(written)
    manifest = json.loads(json.dumps(manifest))  # as a registry would give it back
    manifest["layers"].append({"mediaType": "application/octet-stream", "digest": "sha256:" + "2" * 64, "size": 1})
    store = {"sha256:" + hashlib.sha256(blob).hexdigest(): blob for _, blob in blobs}
    found = signatures_in(manifest, store.__getitem__)
    assert found == written
    assert all(verify_signature(key.public(), s.payload, s.signature) for s in found)
    payload, signature = found[0]
    assert check_payload(payload, DIGEST) is None and signature == written[0].signature


def test_signatures_in_refuses_a_blob_that_does_not_have_its_digest() -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    manifest, _ = signature_manifest(payload, "c2ln")
    with pytest.raises(SigningError, match="does not have that digest"):
        signatures_in(manifest, lambda digest: payload + b" ")
