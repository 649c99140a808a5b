"""Key-based image signatures that ``cosign verify --key`` accepts: ECDSA P-256 over a simple-signing payload.

Pure: keys, bytes and documents in and out; pushing and fetching are the registry client's.

The payload (sigstore/sigstore ``pkg/signature/payload``: Go's ``json.Marshal`` of a struct, fields in
this order, no spaces)::

    {"critical":{"identity":{"docker-reference":"127.0.0.1:5000/company/base"},
    "image":{"docker-manifest-digest":"sha256:<hex>"},"type":"cosign container image signature"},
    "optional":null}

is signed with ECDSA-SHA256; the signature, ASN.1 DER, base64 (standard alphabet), goes in the
``dev.cosignproject.cosign/signature`` annotation of the one layer of an OCI image manifest whose
blob is the payload (media type ``application/vnd.dev.cosign.simplesigning.v1+json``), pushed to the
image's repository under the tag ``sha256-<hex>.sig`` (cosign ``pkg/oci/static``, ``pkg/oci/empty``).
Its config is what go-containerregistry writes for an empty image with that layer appended::

    {"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],
    "os":"","rootfs":{"type":"layers","diff_ids":["sha256:<payload's sha256>"]},"config":{}}

(cosign itself stamps ``created`` with the time it signs; here it is the zero time unless given, so
that the same signature makes the same manifest.)

Keys are PEM files: PKCS#8 (``BEGIN PRIVATE KEY``, or ``BEGIN ENCRYPTED PRIVATE KEY`` with the
password in an environment variable) or SEC1 (``BEGIN EC PRIVATE KEY``), on P-256 only; public keys
SubjectPublicKeyInfo (``BEGIN PUBLIC KEY``, what ``cosign public-key`` prints). Cosign's own
encrypted format (``BEGIN ENCRYPTED SIGSTORE PRIVATE KEY``) is refused with a way to convert.

    SigningError (OrchestratorError, exit 2)   a key that cannot be read, decrypted or used
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from orchestrator.errors import OrchestratorError

PAYLOAD_TYPE = "cosign container image signature"
SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as go-containerregistry writes it
ACCEPTED = "PKCS#8 PEM (BEGIN PRIVATE KEY / BEGIN ENCRYPTED PRIVATE KEY) or SEC1 PEM (BEGIN EC PRIVATE KEY)"
CONVERT_HINT = (
    "make a PKCS#8 key instead (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out cosign.pem); "
    "cosign can use it too after `cosign import-key-pair --key cosign.pem`"
)
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_ENCRYPTED_LABELS = (b"ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED")
_PLAIN_LABEL = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")  # others than PKCS#8 and SEC1: refused by type


class SigningError(OrchestratorError):
    """A signing or verification key that cannot be read, decrypted or used (holds its path)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyingKey:
    """An ECDSA P-256 public key, and where it came from (for messages)."""

    key: ec.EllipticCurvePublicKey = field(repr=False, compare=False)
    source: str

    def pem(self) -> bytes:
        """The key as ``cosign verify --key`` reads it (SubjectPublicKeyInfo PEM)."""
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """An ECDSA P-256 private key, and where it came from (for messages; never printed)."""

    key: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)
    source: str

    def public(self) -> VerifyingKey:
        return VerifyingKey(key=self.key.public_key(), source=self.source)


class Signed(NamedTuple):
    """A payload and its base64 signature, as one layer of a ``.sig`` manifest holds them."""

    payload: bytes
    signature: str


def _p256(key: object, path: str) -> None:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return
        kind = f"an ECDSA key on {key.curve.name}"
    elif isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        kind = f"an RSA key ({key.key_size} bits)"
    else:
        kind = f"a {type(key).__name__} key"
    raise SigningError(f"{path} holds {kind}: cosign-compatible signing takes ECDSA on P-256 (secp256r1)", path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read the key {path}: {exc.strerror or exc}", str(path)) from exc


def _password(path: str, password_env: str | None, environ: Mapping[str, str]) -> bytes:
    if password_env is None:
        raise SigningError(f"{path} is encrypted: name the environment variable that holds its password", path)
    password = environ.get(password_env)
    if password is None:
        raise SigningError(f"{path} is encrypted and ${password_env}, which should hold its password, is not set", path)
    return password.encode()


def load_private_key(
    path: Path, password_env: str | None = None, *, environ: Mapping[str, str] | None = None
) -> SigningKey:
    """The P-256 key in the PEM file ``path``; an encrypted one's password is in ``$password_env``."""
    data = _read(path)
    where = str(path)
    if b"SIGSTORE PRIVATE KEY" in data or b"COSIGN PRIVATE KEY" in data:
        raise SigningError(f"{where} is in cosign's own encrypted format, which is not read: {CONVERT_HINT}", where)
    encrypted = any(label in data for label in _ENCRYPTED_LABELS)
    if not encrypted and _PLAIN_LABEL.search(data) is None:
        raise SigningError(f"{where} is not a private key this reads: expected {ACCEPTED}", where)
    password = _password(where, password_env, os.environ if environ is None else environ) if encrypted else None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if encrypted:
            message = f"cannot decrypt {where} with the password in ${password_env} (wrong password?)"
        else:
            message = f"{where} is not a valid private key ({ACCEPTED})"
        raise SigningError(message, where) from exc
    _p256(key, where)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return SigningKey(key=key, source=where)


def load_public_key(path: Path) -> VerifyingKey:
    """The P-256 public key in the PEM file ``path`` (``BEGIN PUBLIC KEY``, as ``cosign public-key`` prints)."""
    data = _read(path)
    where = str(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"{where} is not a PEM public key (BEGIN PUBLIC KEY)", where) from exc
    _p256(key, where)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return VerifyingKey(key=key, source=where)


def _digest_hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise ValueError(f"not a manifest digest: {digest!r} (expected sha256:<64 lowercase hex digits>)")
    return match.group(1)


def simple_signing_payload(docker_reference: str, manifest_digest: str) -> bytes:
    """The bytes cosign signs for ``docker_reference`` (a repository: no tag, no digest) at ``manifest_digest``."""
    _digest_hex(manifest_digest)
    name = docker_reference.rpartition("/")[2]
    if "@" in docker_reference or ":" in name:
        raise ValueError(f"{docker_reference!r} is not a repository: drop its tag or digest")
    document = {  # the order of Go's structs; references hold no <, > or & (which Go would escape)
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def check_payload(payload: bytes, manifest_digest: str, docker_reference: str | None = None) -> str | None:
    """Why ``payload`` does not vouch for ``manifest_digest`` (and ``docker_reference`` if given), or None."""
    try:
        document = json.loads(payload)
        critical = document["critical"]
        kind, digest = critical["type"], critical["image"]["docker-manifest-digest"]
        reference = critical["identity"]["docker-reference"]
    except (ValueError, TypeError, KeyError):
        return "the payload is not a simple-signing document"
    if kind != PAYLOAD_TYPE:
        return f"the payload's type is {kind!r}, not {PAYLOAD_TYPE!r}"
    if digest != manifest_digest:
        return f"the payload is for {digest}, not {manifest_digest}"
    if docker_reference is not None and reference != docker_reference:
        return f"the payload names {reference!r}, not {docker_reference!r}"
    return None


def sign(key: SigningKey, payload: bytes) -> str:
    """The base64 of the DER ECDSA-SHA256 signature of ``payload`` (the annotation's value)."""
    return base64.b64encode(key.key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def verify_signature(public_key: VerifyingKey, payload: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is the key's signature of ``payload``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def signature_tag(manifest_digest: str) -> str:
    """The tag cosign keeps an image's signatures under: ``sha256-<hex>.sig``."""
    return f"sha256-{_digest_hex(manifest_digest)}.sig"


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(blob), "digest": "sha256:" + hashlib.sha256(blob).hexdigest()}


def signatures_manifest(
    signatures: Sequence[Signed], *, created: str = ZERO_TIME
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The ``.sig`` manifest holding ``signatures`` (one layer each), and its blobs: the config, then payloads."""
    if not signatures:
        raise ValueError("a signature manifest needs at least one signature")
    diff_ids = [_descriptor(SIMPLESIGNING_MEDIA_TYPE, s.payload)["digest"] for s in signatures]
    config = {  # go-containerregistry's ConfigFile, fields in its order
        "architecture": "",
        "created": created,
        "history": [{"created": ZERO_TIME} for _ in signatures],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }
    config_blob = json.dumps(config, separators=(",", ":")).encode()
    layers = [
        {**_descriptor(SIMPLESIGNING_MEDIA_TYPE, s.payload), "annotations": {SIGNATURE_ANNOTATION: s.signature}}
        for s in signatures
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(OCI_CONFIG, config_blob),
        "layers": layers,
    }
    blobs = [(OCI_CONFIG, config_blob)] + [(SIMPLESIGNING_MEDIA_TYPE, s.payload) for s in signatures]
    return manifest, blobs


def signature_manifest(
    payload: bytes, signature_b64: str, *, created: str = ZERO_TIME
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The ``.sig`` manifest cosign pushes for one signature, and its blobs (config, payload)."""
    return signatures_manifest([Signed(payload, signature_b64)], created=created)


def signatures_in(manifest: Mapping[str, Any], fetch_blob: Callable[[str], bytes]) -> list[Signed]:
    """The signatures a ``.sig`` manifest holds; ``fetch_blob(digest)`` gives a layer's bytes.

    Layers of another media type, or without the signature annotation, are skipped; a blob whose
    bytes do not have the digest the manifest gives is a ``SigningError``.
    """
    found: list[Signed] = []
    for layer in manifest.get("layers") or ():
        signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if layer.get("mediaType") != SIMPLESIGNING_MEDIA_TYPE or not isinstance(signature, str):
            continue
        digest = str(layer.get("digest"))
        payload = fetch_blob(digest)
        if "sha256:" + hashlib.sha256(payload).hexdigest() != digest:
            raise SigningError(f"the signature payload {digest} fetched does not have that digest")
        found.append(Signed(payload, signature))
    return found
