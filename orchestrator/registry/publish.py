"""``build --push``: the selection's human tags, made in the registry from content tags already there.

Nothing is uploaded here: every node's image is already in the registry under its content tag (a
hit, or pushed after its build), so a human tag is one manifest ``PUT`` (none when the tag already
names exactly those images). A target built for one
platform gets that platform's manifest; a target built for several gets one OCI image index naming
every platform, put only when every platform's image is there. The caller passes only targets whose
whole closure succeeded, so a failure never moves a human tag in the registry either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator.core.model import Node, Target
from orchestrator.registry.cache import RegistryClient
from orchestrator.registry.client import RegistryError, RegistryUnavailable, RemoteImage, index_digest


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    pushed: tuple[str, ...]  # registry references now pointing at the new images
    errors: tuple[str, ...]  # what could not be pushed, and why
    unchanged: tuple[str, ...] = ()  # references that already pointed at exactly these images


def publish(
    registry: RegistryClient,
    targets: Iterable[tuple[Target, list[Node]]],
    in_registry: Mapping[Node, RemoteImage],
) -> Published:
    """Point each target's human tags at its images in ``registry`` (one index when several platforms)."""
    pushed: list[str] = []
    errors: list[str] = []
    unchanged: list[str] = []
    for target, nodes in targets:
        missing = [n.platform for n in nodes if n not in in_registry]
        if missing:
            errors.append(f"{target.label}: not pushed, its image for {', '.join(missing)} is not in the registry")
            continue
        images = [in_registry[n] for n in sorted(nodes)]
        for tag in target.tags:
            reference = registry.reference(target.repository, tag)
            try:
                wanted = images[0].digest if len(images) == 1 else index_digest(images)
                current = registry.lookup(target.repository, tag)
                if current is not None and current.digest == wanted:
                    unchanged.append(reference)
                    continue
                if len(images) == 1:
                    registry.tag_manifest(target.repository, images[0], tag)
                else:
                    registry.put_index(target.repository, tag, images)
            except (RegistryUnavailable, RegistryError, ValueError) as exc:
                errors.append(f"{target.label}: could not push {reference}: {exc}")
                continue
            pushed.append(reference)
    return Published(pushed=tuple(pushed), errors=tuple(errors), unchanged=tuple(unchanged))
