"""After ``build --push``: the attestations of each published image attached to it, and signatures.

For each selected target whose human tags were pushed (or already named its images):

    each platform manifest  <- its SBOM and its provenance, as OCI artifacts whose subject it is
    the index (several platforms) <- every platform's SBOM and provenance too, annotated with the platform
    with a signing key: each platform manifest, the index, and every artifact attached, signed

Artifacts: ``artifactType`` ``application/vnd.cyclonedx+json`` (the SBOM, CycloneDX JSON) and
``application/vnd.in-toto+json`` (the provenance statement; its subjects are the platform manifest
and, for several platforms, the index). Annotations: ``org.orchestrator.platform``,
``org.orchestrator.key`` and, on provenance, ``in-toto.io/predicate-type``. They are deterministic: the
same image pushed again attaches nothing new (``registry/artifacts.py``). Nothing here fails the
build: each problem is a warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.core.content import KEY_LABEL, content_tag
from orchestrator.core.model import Node
from orchestrator.errors import OrchestratorError
from orchestrator.graph.graph import TargetGraph
from orchestrator.pipeline.attest_provenance import Provenance
from orchestrator.pipeline.summary import BuildSummary, NodeReport
from orchestrator.pipeline.supply_sign import PROVENANCE_ARTIFACT, SBOM_ARTIFACT, sign_digest
from orchestrator.registry.artifacts import Registry, push_artifact, subject_of
from orchestrator.supply.provenance import PREDICATE_TYPE
from orchestrator.supply.signing import SigningKey

PLATFORM_ANNOTATION = "org.orchestrator.platform"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attestations:
    """What the run made of each node, to attach: SBOM texts and provenance statements."""

    sboms: Mapping[Node, str] = field(default_factory=dict)
    provenance: Mapping[Node, Provenance] = field(default_factory=dict)
    kinds: frozenset[str] = frozenset()  # the attestations asked for (sbom, provenance)


def published_targets(graph: TargetGraph, registry: Registry, summary: BuildSummary) -> list[tuple[str, str]]:
    """``(label, tag)`` of each selected target pushed (a tag of it named in ``summary.published``)."""
    if summary.published is None:
        return []
    pushed = set(summary.published.pushed) | set(summary.published.unchanged)
    found = []
    for label in sorted(summary.plan.selected):
        target = graph.targets[label]
        tags = [t for t in target.tags if registry.reference(target.repository, t) in pushed]
        if tags:
            found.append((str(label), tags[0]))
    return found


def publish_supply(
    graph: TargetGraph,
    registry: Registry,
    summary: BuildSummary,
    made: Attestations,
    key: SigningKey | None,
) -> list[str]:
    """Attach and sign (see the module docstring); the warnings."""
    warnings: list[str] = []
    by_label: dict[str, list[NodeReport]] = {}
    for report in summary.reports:
        by_label.setdefault(str(report.node.label), []).append(report)
    for label, tag in published_targets(graph, registry, summary):
        reports = sorted(by_label.get(label, []), key=lambda r: r.node)
        repository = graph.targets[reports[0].node.label].repository
        try:
            warnings += _publish_target(registry, repository, tag, reports, made, key)
        except (OrchestratorError, ValueError) as exc:
            warnings.append(f"{label}: attestations or signatures not pushed: {exc}")
    return warnings


def _publish_target(
    registry: Registry,
    repository: str,
    tag: str,
    reports: list[NodeReport],
    made: Attestations,
    key: SigningKey | None,
) -> list[str]:
    warnings: list[str] = []
    manifests = {r.node: registry.manifest_bytes(repository, content_tag(r.key))[2] for r in reports}
    index = registry.manifest_bytes(repository, tag)[2] if len(reports) > 1 else None
    to_sign = [*manifests.values(), *([index] if index else [])]
    for report in reports:
        node = report.node
        annotations = {PLATFORM_ANNOTATION: node.platform, KEY_LABEL: report.key}
        payloads: list[tuple[str, bytes, dict[str, str]]] = []
        if "sbom" in made.kinds:
            if node in made.sboms:
                payloads.append((SBOM_ARTIFACT, made.sboms[node].encode(), annotations))
            else:
                warnings.append(f"{node}: no SBOM to attach to {registry.reference(repository, tag)}")
        if "provenance" in made.kinds:
            if node in made.provenance:
                statement = _with_index(made.provenance[node].text, index)
                payloads.append((PROVENANCE_ARTIFACT, statement, {**annotations, PREDICATE_ANNOTATION: PREDICATE_TYPE}))
            else:
                warnings.append(f"{node}: no provenance to attach to {registry.reference(repository, tag)}")
        for subject_digest in [manifests[node], *([index] if index else [])]:
            subject = subject_of(registry, repository, subject_digest)
            for artifact_type, payload, notes in payloads:
                to_sign.append(
                    push_artifact(
                        registry,
                        repository,
                        subject=subject,
                        artifact_type=artifact_type,
                        payload=payload,
                        payload_media_type=artifact_type,
                        annotations=notes,
                    )
                )
    if key is not None:
        for digest in dict.fromkeys(to_sign):
            sign_digest(registry, repository, digest, key)
    return warnings


def _with_index(text: str, index: str | None) -> bytes:
    """The statement, with the index among its subjects when there is one."""
    if index is None:
        return text.encode()
    statement = json.loads(text)
    subjects: Iterable[dict[str, object]] = statement.get("subject") or []
    names = sorted({str(s.get("name")) for s in subjects})
    added = [{"name": name, "digest": {"sha256": index.removeprefix("sha256:")}} for name in names]
    statement["subject"] = sorted([*statement["subject"], *added], key=lambda s: (s["name"], s["digest"]["sha256"]))
    return (json.dumps(statement, indent=2, sort_keys=True) + "\n").encode()
