"""OCI 1.1 artifacts attached to an image manifest: SBOMs, SLSA provenance, cosign signatures.

An artifact is an OCI image manifest with an ``artifactType``, the empty config, its payload as the
one layer, and a ``subject``: the image manifest it is about. It is pushed by digest and found
again through the manifest it is attached to (OCI distribution spec 1.1):

    registry answers the PUT with OCI-Subject    -> the referrers API lists it; nothing more to do
    no OCI-Subject (distribution 2.8)            -> this module keeps the referrers tag schema's index,
                                                    tag ``sha256-<subject hex>``, up to date
    GET /v2/<name>/referrers/<digest> unsupported -> ``referrers`` reads that tag's index instead

Updating the tag's index is a read-modify-write: two clients attaching to one subject at the same
moment can lose one entry (the spec leaves that to clients; distribution 2.8 has no conditional PUT).

Cosign keeps signatures elsewhere: an image tagged ``sha256-<subject hex>.sig`` whose layers are the
signatures, one per signer (``append_signature_layer``).

The ORAS Python SDK (PyPI ``oras`` 0.2) is not used: it has neither the referrers API nor the
referrers tag fallback, and would bring a second HTTP and credentials stack beside ``client.py``.
Errors are the client's: ``RegistryError`` (a malformed index or artifact, a digest that does not
match), ``RegistryUnavailable``, ``RegistryAuthError``; bad arguments are ``ValueError``.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from orchestrator.registry.client import (
    OCI_INDEX,
    OCI_MANIFEST,
    SINGLE_IMAGE_TYPES,
    RegistryError,
    sha256_digest,
)

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DESCRIPTOR: Mapping[str, Any] = types.MappingProxyType(
    {
        "mediaType": EMPTY_MEDIA_TYPE,
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    }
)
CREATED_ANNOTATION = "org.opencontainers.image.created"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@runtime_checkable
class Registry(Protocol):
    """What artifacts need of a registry: ``client.Registry``, or an in-memory fake in tests."""

    def reference(self, repository: str, tag: str) -> str: ...

    def manifest_bytes(self, repository: str, reference: str) -> tuple[str, bytes, str]: ...

    def manifest_json(self, repository: str, reference: str) -> dict[str, Any] | None: ...

    def blob(self, repository: str, digest: str) -> bytes: ...

    def push_blob(self, repository: str, data: bytes) -> str: ...

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str: ...

    def put_referrer(self, repository: str, media_type: str, body: bytes) -> tuple[str, str | None]: ...

    def referrers_api(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """A manifest as another one points at it: the ``subject`` of an artifact."""

    media_type: str
    digest: str  # "sha256:..."
    size: int  # of the manifest, in bytes

    def document(self) -> dict[str, Any]:
        """The descriptor as OCI JSON."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True, kw_only=True)
class Referrer:
    """An artifact attached to a manifest, as the referrers API or the referrers tag lists it."""

    digest: str  # of the artifact's manifest
    media_type: str
    size: int
    artifact_type: str
    annotations: Mapping[str, str] = field(hash=False)  # hashable all the same


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256:ab..`` -> ``sha256-ab..``.

    The algorithm truncated to 32 characters, ``-``, the encoded part truncated to 64, and every
    character a tag cannot hold replaced by ``-``.
    """
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not algorithm or not encoded:
        raise ValueError(f"not a digest: {digest!r}")
    return _TAG_UNSAFE.sub("-", f"{algorithm[:32]}-{encoded[:64]}")


def signature_tag(digest: str) -> str:
    """Cosign's tag for the signatures of ``digest``: ``sha256-<hex>.sig``."""
    return referrers_tag(digest) + ".sig"


def subject_of(registry: Registry, repository: str, reference: str) -> Descriptor:
    """The descriptor of the manifest ``reference`` (a tag or digest), to attach artifacts to."""
    media_type, body, digest = registry.manifest_bytes(repository, reference)
    return Descriptor(media_type=media_type, digest=digest, size=len(body))


def artifact_manifest(
    *,
    subject: Descriptor,
    artifact_type: str,
    payload: bytes,
    payload_media_type: str,
    annotations: Mapping[str, str],
) -> bytes:
    """The artifact's OCI image manifest, as deterministic JSON bytes (the same inputs, the same digest)."""
    if not artifact_type:
        raise ValueError("an artifact needs an artifactType")
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": dict(EMPTY_DESCRIPTOR),
        "layers": [{"mediaType": payload_media_type, "digest": sha256_digest(payload), "size": len(payload)}],
        "subject": subject.document(),
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return _canonical(manifest)


def push_artifact(
    registry: Registry,
    repository: str,
    *,
    subject: Descriptor,
    artifact_type: str,
    payload: bytes,
    payload_media_type: str,
    annotations: Mapping[str, str],
) -> str:
    """Attach ``payload`` to ``subject`` as an artifact of ``artifact_type``; the artifact manifest's digest.

    ``annotations`` go on the manifest and on its entry in the referrers list; pass
    ``org.opencontainers.image.created`` there to date it (nothing is added, so that pushing the
    same artifact twice gives the same digest and one entry).
    """
    body = artifact_manifest(
        subject=subject,
        artifact_type=artifact_type,
        payload=payload,
        payload_media_type=payload_media_type,
        annotations=annotations,
    )
    registry.push_blob(repository, EMPTY_BLOB)
    registry.push_blob(repository, payload)
    digest, answered_subject = registry.put_referrer(repository, OCI_MANIFEST, body)
    if answered_subject is None:  # the registry did not index the subject: keep the referrers tag ourselves
        entry: dict[str, Any] = {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(body),
            "artifactType": artifact_type,
        }
        if annotations:
            entry["annotations"] = dict(annotations)
        _add_to_referrers_tag(registry, repository, subject.digest, entry)
    return digest


def referrers(
    registry: Registry, repository: str, subject_digest: str, artifact_type: str | None = None
) -> list[Referrer]:
    """The artifacts attached to ``subject_digest`` (of ``artifact_type`` only, if given), sorted.

    From the referrers API; where the registry has none, from the referrers tag's index; [] when
    neither lists any.
    """
    entries = registry.referrers_api(repository, subject_digest, artifact_type)
    if entries is None:
        index = registry.manifest_json(repository, referrers_tag(subject_digest))
        # not an index: the spec says to assume there are no referrers
        entries = _index_entries(index) if index is not None and _is_index(index) else []
    found = {referrer.digest: referrer for referrer in map(_referrer, entries) if referrer is not None}
    chosen = [r for r in found.values() if artifact_type is None or r.artifact_type == artifact_type]
    return sorted(chosen, key=lambda referrer: (referrer.artifact_type, referrer.digest))


def fetch_artifact(registry: Registry, repository: str, digest: str) -> tuple[dict[str, Any], bytes]:
    """The artifact manifest ``digest`` and its payload (the one layer), both checked against their digests."""
    _, body, _ = registry.manifest_bytes(repository, digest)  # checked against ``digest``
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"the artifact {repository}@{digest} is not JSON: {exc}") from exc
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        count = len(layers) if isinstance(layers, list) else 0
        raise RegistryError(f"the artifact {repository}@{digest} has {count} layers, not one payload")
    layer = layers[0]
    payload = registry.blob(repository, str(layer.get("digest")))
    if len(payload) != layer.get("size"):
        raise RegistryError(
            f"the payload of {repository}@{digest} has {len(payload)} bytes, its descriptor says {layer.get('size')}"
        )
    return manifest, payload


def push_tagged_manifest(
    registry: Registry, repository: str, tag: str, manifest: Mapping[str, Any], blobs: Sequence[tuple[str, bytes]]
) -> str:
    """Push ``blobs`` (``(media type, bytes)``), then ``manifest`` as deterministic JSON under ``tag``; its digest."""
    for _, data in blobs:
        registry.push_blob(repository, data)
    media_type = str(manifest.get("mediaType") or OCI_MANIFEST)
    return registry.put_manifest(repository, tag, media_type, _canonical(dict(manifest)))


def append_signature_layer(
    registry: Registry,
    repository: str,
    subject_digest: str,
    *,
    payload: bytes,
    annotations: Mapping[str, str],
    payload_media_type: str = COSIGN_SIMPLESIGNING,
) -> str:
    """Add a signature of ``subject_digest`` to cosign's image at ``sha256-<hex>.sig``; that image's digest.

    The first signature makes the image; a later one becomes another layer of it, and one already
    there (same payload, same annotations, such as ``dev.cosignproject.cosign/signature``) is not
    added twice.
    """
    tag = signature_tag(subject_digest)
    layer: dict[str, Any] = {"mediaType": payload_media_type, "digest": sha256_digest(payload), "size": len(payload)}
    if annotations:
        layer["annotations"] = dict(annotations)
    existing = registry.manifest_json(repository, tag)
    layers: list[dict[str, Any]] = []
    if existing is not None:
        old = existing.get("layers")
        if existing.get("mediaType", OCI_MANIFEST) not in SINGLE_IMAGE_TYPES or not isinstance(old, list):
            raise RegistryError(f"{repository}:{tag} is not a cosign signature image (an image manifest)")
        layers = [entry for entry in old if isinstance(entry, dict)]
    if layer in layers:
        return registry.manifest_bytes(repository, tag)[2]  # signed so already
    layers.append(layer)
    config = _canonical(_signature_config(layers))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_IMAGE_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": layers,
    }
    return push_tagged_manifest(
        registry, repository, tag, manifest, [(OCI_IMAGE_CONFIG, config), (payload_media_type, payload)]
    )


# --- helpers -----------------------------------------------------------------------------------


def _add_to_referrers_tag(registry: Registry, repository: str, subject_digest: str, entry: dict[str, Any]) -> None:
    """Read-modify-write the referrers tag's index so that it lists ``entry`` once."""
    tag = referrers_tag(subject_digest)
    index = registry.manifest_json(repository, tag)
    if index is None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    elif not _is_index(index):
        raise RegistryError(
            f"{repository}:{tag} is not an OCI image index, so the referrers of {subject_digest} cannot be listed "
            "there; remove or retag it"
        )
    entries = _index_entries(index)
    if any(existing.get("digest") == entry["digest"] for existing in entries):
        return  # listed already: duplicate entries should not be created
    manifests = sorted([*entries, entry], key=lambda e: str(e.get("digest")))
    registry.put_manifest(repository, tag, OCI_INDEX, _canonical({**index, "manifests": manifests}))


def _is_index(document: Mapping[str, Any]) -> bool:
    return document.get("mediaType", OCI_INDEX) == OCI_INDEX and isinstance(document.get("manifests"), list)


def _index_entries(index: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in index.get("manifests") or [] if isinstance(entry, dict)]


def _referrer(entry: Mapping[str, Any]) -> Referrer | None:
    """A Referrer of an index entry; None for an entry without a digest."""
    digest = entry.get("digest")
    if not isinstance(digest, str) or not digest:
        return None
    raw = entry.get("annotations")
    annotations = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    size = entry.get("size")
    return Referrer(
        digest=digest,
        media_type=str(entry.get("mediaType") or ""),
        size=size if isinstance(size, int) else 0,
        artifact_type=str(entry.get("artifactType") or ""),
        annotations=types.MappingProxyType(annotations),
    )


def _signature_config(layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The image config of cosign's signature image: its layers' digests, the rest empty and undated."""
    undated = "0001-01-01T00:00:00Z"
    return {
        "architecture": "",
        "config": {},
        "created": undated,
        "history": [{"created": undated} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(layer["digest"]) for layer in layers]},
    }


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
