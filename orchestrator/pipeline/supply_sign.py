"""Signing images in a registry the way cosign does with a key (``build --push --sign-key``, ``orchestrator sign``).

A signature is of one manifest digest: an image's, an index's, or an attestation's (an OCI artifact
attached to an image). It is a layer of the image tagged ``sha256-<hex>.sig`` in the same repository
(``registry/artifacts.py: append_signature_layer``), its payload the simple-signing document naming
the repository (no tag: ``127.0.0.1:5000/company/base``) and the digest (``supply/signing.py``).

Signing is idempotent: a digest that already carries a signature of this key for that digest is
not signed again (ECDSA signatures differ each time, so a second one would be a second layer).

``sign_reference`` signs what ``orchestrator sign REF`` names: the manifest REF points at now and,
when it is an index, each platform manifest it lists; then every SBOM and provenance attestation
attached to those (``referrers``), so that ``verify --require`` accepts them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.core.imageref import ImageReference
from orchestrator.errors import UsageError
from orchestrator.registry.artifacts import COSIGN_SIGNATURE_ANNOTATION, Registry, append_signature_layer, referrers
from orchestrator.registry.artifacts import signature_tag as sig_tag
from orchestrator.registry.client import INDEX_TYPES
from orchestrator.registry.defaults import looks_like_host
from orchestrator.supply.signing import (
    SigningKey,
    VerifyingKey,
    check_payload,
    sign,
    signatures_in,
    simple_signing_payload,
    verify_signature,
)

SBOM_ARTIFACT = "application/vnd.cyclonedx+json"  # CycloneDX JSON's media type (IANA)
PROVENANCE_ARTIFACT = "application/vnd.in-toto+json"  # an in-toto statement, not wrapped in DSSE
ARTIFACT_TYPES = {"sbom": SBOM_ARTIFACT, "provenance": PROVENANCE_ARTIFACT}


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryRef:
    """``127.0.0.1:5000/company/base:1.0``: the registry's address, the repository in it, a tag or digest."""

    address: str
    repository: str
    reference: str  # a tag or a digest
    text: str  # as given

    @property
    def name(self) -> str:
        """The repository with its registry, as signatures name it (no tag, no digest)."""
        return f"{self.address}/{self.repository}"

    @staticmethod
    def parse(text: str) -> RegistryRef:
        """``host[:port]/repository[:tag|@digest]``; UsageError when no registry is named."""
        parsed = ImageReference.parse(text)
        host, slash, repository = parsed.repository.partition("/")
        if not slash or not looks_like_host(host):
            raise UsageError(f"{text!r} names no registry: give it in full, e.g. 127.0.0.1:5000/company/base:1.0")
        reference = parsed.digest or parsed.tag or "latest"
        return RegistryRef(address=host, repository=repository, reference=reference, text=text)


def docker_reference(registry: Registry, repository: str) -> str:
    """The repository as the registry's clients name it: ``host/remote-repository``, no tag."""
    return registry.reference(repository, "latest").rpartition(":")[0]


def signed_by(registry: Registry, repository: str, digest: str, key: VerifyingKey) -> tuple[bool, str | None]:
    """Whether ``digest`` carries a signature by ``key`` for that digest: (True, None), else (False, why not)."""
    manifest = registry.manifest_json(repository, sig_tag(digest))
    if manifest is None:
        return False, "no signature"
    found = signatures_in(manifest, lambda blob: registry.blob(repository, blob))
    valid = [s for s in found if verify_signature(key, s.payload, s.signature)]
    if not valid:
        return False, f"none of its {len(found)} signatures verifies with {key.source}"
    problems = [check_payload(s.payload, digest) for s in valid]
    if any(problem is None for problem in problems):
        return True, None
    return False, f"{key.source} signed another image ({problems[0]})"


def sign_digest(registry: Registry, repository: str, digest: str, key: SigningKey) -> bool:
    """Sign ``digest`` in ``repository`` unless this key signed it already; whether a signature was added."""
    if signed_by(registry, repository, digest, key.public())[0]:
        return False
    payload = simple_signing_payload(docker_reference(registry, repository), digest)
    annotations = {COSIGN_SIGNATURE_ANNOTATION: sign(key, payload)}
    append_signature_layer(registry, repository, digest, payload=payload, annotations=annotations)
    return True


def platform_manifests(registry: Registry, repository: str, digest: str) -> tuple[str, list[str]]:
    """``(media type, children)`` of the manifest ``digest``: an index's platform manifests, else []."""
    media_type, body, _ = registry.manifest_bytes(repository, digest)
    if media_type not in INDEX_TYPES:
        return media_type, []
    entries = json.loads(body).get("manifests") or []
    return media_type, [str(e["digest"]) for e in entries if isinstance(e, dict) and "digest" in e]


def attestations_of(registry: Registry, repository: str, digests: Iterable[str]) -> list[str]:
    """The digests of the SBOM and provenance artifacts attached to ``digests``."""
    found: dict[str, None] = {}
    for digest in digests:
        for referrer in referrers(registry, repository, digest):
            if referrer.artifact_type in ARTIFACT_TYPES.values():
                found[referrer.digest] = None
    return list(found)


def sign_reference(registry: Registry, ref: RegistryRef, key: SigningKey) -> tuple[str, list[str]]:
    """``orchestrator sign``: ``(REF's digest, every digest signed now)`` (see the module docstring)."""
    _, _, digest = registry.manifest_bytes(ref.repository, ref.reference)
    _, children = platform_manifests(registry, ref.repository, digest)
    images = [digest, *children]
    signed = []
    for each in [*images, *attestations_of(registry, ref.repository, images)]:
        if sign_digest(registry, ref.repository, each, key):
            signed.append(each)
    return digest, signed
