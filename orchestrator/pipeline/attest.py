"""Attestations of built images, after the build: for now the SBOM (``orchestrator sbom``, ``--attest sbom``).

An SBOM is cached by key and platform (``cache/names.py: sbom``): the same key is the same image, so
its SBOM is read from the engine's copy of the image once (``Executor.save``, the layers read by
``supply/``) and from the store after. Attestations are not inputs of keys: switching them on
changes no key and rebuilds nothing.

After a build (``attest_sboms``), a node whose SBOM cannot be made is a WARNING, not a failure:
the image was built and checked; the SBOM is a report about it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.core.model import Node
from orchestrator.engine.api import Executor
from orchestrator.errors import OrchestratorError
from orchestrator.pipeline.summary import BuildSummary, NodeReport, NodeStatus
from orchestrator.supply.sbom import saved_image_sbom

IN_THE_ENGINE = frozenset({NodeStatus.BUILT, NodeStatus.CACHED, NodeStatus.PULLED})


ExecutorOf = Callable[[NodeReport], Executor]
"""The engine holding a report's image."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sbom:
    node: Node
    key: str
    text: str  # CycloneDX JSON
    cached: bool  # from the store, not read from the image


def cached_sbom(store: Store, node: Node, key: str) -> Sbom | None:
    """The SBOM stored for ``key`` on the node's platform, else None."""
    text = store.get(names.sbom(key, node.platform))
    return Sbom(node=node, key=key, text=text, cached=True) if isinstance(text, str) else None


def image_sbom(store: Store, executor: Executor, node: Node, key: str, image: str) -> Sbom:
    """The SBOM of ``image`` (the node's image at ``key``, in the engine): from the store, else read and stored."""
    known = cached_sbom(store, node, key)
    if known is not None:
        return known
    with executor.save(image) as archive:
        text = saved_image_sbom(archive, label=str(node.label), key=key, platform=node.platform)
    store.set(names.sbom(key, node.platform), text)
    return Sbom(node=node, key=key, text=text, cached=False)


def attest_sboms(store: Store, executor: ExecutorOf, reports: Iterable[NodeReport]) -> list[str]:
    """The SBOM of each node built, cached or pulled, stored; a warning for each one that could not be made.

    ``executor(report)``: the engine that holds the report's image (where its layers are read).
    """
    warnings = []
    for report in reports:
        if report.status not in IN_THE_ENGINE:
            continue
        image = report.image_id or (report.tags[0] if report.tags else None)
        if image is None:
            continue
        try:
            image_sbom(store, executor(report), report.node, report.key, image)
        except (OrchestratorError, OSError) as exc:
            warnings.append(f"{report.node}: no SBOM: {exc}")
    return warnings


def attest(summary: BuildSummary, store: Store, executor: ExecutorOf, kinds: Iterable[str]) -> BuildSummary:
    """``summary`` with the warnings of the attestations ``kinds`` asks for (made for its nodes)."""
    if "sbom" not in set(kinds) or summary.interrupted:
        return summary
    warnings = attest_sboms(store, executor, summary.reports)
    if not warnings:
        return summary
    return replace(summary, warnings=summary.warnings + tuple(warnings))
