"""``orchestrator verify REF --key PUB [--require sbom,provenance]``: does REF hold what was signed?

    REF -> the digest its tag names now (or the digest REF gives)
        -> a ``sha256-<hex>.sig`` signature that PUB verifies, whose payload names that digest
        -> for each required attestation, on each image manifest (REF's, or every platform
           manifest an index REF lists): an artifact of that type attached to it (``referrers``),
           itself signed by PUB, and, for provenance, a statement whose subject names the manifest

An index is checked by its own signature (``build --push --sign-key`` signs the index and each
platform manifest); attestations are about images, so an index needs them on every platform.
An attestation counts only when PUB signed it too: anyone who may push to the repository may attach
an artifact; only the key's holder can vouch for it.

The first check that fails is the answer: one line, e.g. ``no signature for REF@sha256:...``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.pipeline.supply_sign import ARTIFACT_TYPES, RegistryRef, platform_manifests, signed_by
from orchestrator.registry.artifacts import Registry, fetch_artifact, referrers
from orchestrator.supply.signing import VerifyingKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    ok: bool
    message: str  # ``verified REF@sha256:... (signature, sbom)`` or which check failed
    digest: str


def verify_reference(registry: Registry, ref: RegistryRef, key: VerifyingKey, required: Sequence[str] = ()) -> Verdict:
    """Check REF's signature and required attestations against ``key`` (see the module docstring)."""
    _, _, digest = registry.manifest_bytes(ref.repository, ref.reference)
    shown = f"{ref.text}@{digest}" if "@" not in ref.text else ref.text
    ok, why = signed_by(registry, ref.repository, digest, key)
    if not ok:
        if why == "no signature":
            return Verdict(ok=False, message=f"no signature for {shown}", digest=digest)
        return Verdict(ok=False, message=f"signature does not match {shown}: {why}", digest=digest)
    _, children = platform_manifests(registry, ref.repository, digest)
    images = children or [digest]
    for kind in required:
        for image in images:
            problem = _attestation_problem(registry, ref.repository, image, kind, key)
            if problem is not None:
                where = shown if image == digest else f"{shown} (its platform manifest {image})"
                return Verdict(ok=False, message=f"no {kind} attestation for {where}{problem}", digest=digest)
    checked = ", ".join(["signature", *required])
    return Verdict(ok=True, message=f"verified {shown} ({checked})", digest=digest)


def _attestation_problem(registry: Registry, repository: str, image: str, kind: str, key: VerifyingKey) -> str | None:
    """None when a ``kind`` artifact attached to ``image`` is signed by ``key`` (and about it); else why not."""
    found = referrers(registry, repository, image, ARTIFACT_TYPES[kind])
    if not found:
        return ""
    unsigned = 0
    for referrer in found:
        if not signed_by(registry, repository, referrer.digest, key)[0]:
            unsigned += 1
            continue
        if kind != "provenance" or _names_subject(registry, repository, referrer.digest, image):
            return None
    if unsigned == len(found):
        return f": {len(found)} attached, none signed by {key.source}"
    return f": the signed statements do not name {image} as their subject"


def _names_subject(registry: Registry, repository: str, artifact: str, image: str) -> bool:
    """Whether the provenance statement ``artifact`` lists ``image`` among its subjects."""
    _, payload = fetch_artifact(registry, repository, artifact)
    try:
        subjects = json.loads(payload).get("subject") or []
        hexes = {str((s.get("digest") or {}).get("sha256")) for s in subjects if isinstance(s, dict)}
    except (ValueError, AttributeError):
        return False
    return image.removeprefix("sha256:") in hexes
