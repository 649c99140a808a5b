"""Attestations of built images, after the build: the SBOM and the provenance (``--attest sbom,provenance``).

An SBOM is cached by key and platform (``cache/names.py: sbom``): the same key is the same image, so
its SBOM is read from the engine's copy of the image once (``Executor.save``, the layers read by
``supply/``) and from the store after. Attestations are not inputs of keys: switching them on
changes no key and rebuilds nothing.

After a build (``attest_sboms``), a node whose SBOM cannot be made is a WARNING, not a failure:
the image was built and checked; the SBOM is a report about it.

``attest`` runs after the pipeline (after ``--push`` too):

    sbom        -> attest_sboms (here)
    provenance  -> attest_provenance.make_provenance (cached by key and platform)
    --push      -> supply_publish.publish_supply: both attached to each published image, and with
                   ``--sign-key`` the images, indexes and attestations signed (supply_sign.py)

Every failure there is a warning of the summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.core.model import Node
from orchestrator.engine.api import Executor
from orchestrator.errors import OrchestratorError
from orchestrator.keys.keys import KeyComputer
from orchestrator.pipeline.attest_provenance import make_provenance
from orchestrator.pipeline.summary import BuildSummary, NodeReport, NodeStatus
from orchestrator.registry.cache import RemoteCache
from orchestrator.supply.sbom import saved_image_sbom
from orchestrator.workspace.loading import LoadedWorkspace

if TYPE_CHECKING:
    from orchestrator.pipeline.attest_provenance import Provenance
    from orchestrator.supply.signing import SigningKey

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Supply:
    """What provenance, pushing attestations and signing need of the run besides its summary."""

    loaded: LoadedWorkspace
    computer: KeyComputer | None  # the run's keys (None only before any key was computed)
    remote: RemoteCache | None = None
    sign_key: SigningKey | None = None  # build --push --sign-key


def attest(
    summary: BuildSummary,
    store: Store,
    executor: ExecutorOf,
    kinds: Iterable[str],
    supply: Supply | None = None,
) -> BuildSummary:
    """``summary`` with the warnings of the attestations ``kinds`` asks for (made for its nodes), pushed
    and signed with ``--push`` (``supply``: needed for provenance, pushing and signing)."""
    wanted = frozenset(kinds)
    if summary.interrupted:
        return summary
    warnings: list[str] = []
    if "sbom" in wanted:
        warnings += attest_sboms(store, executor, summary.reports)
    provenance: dict[Node, Provenance] = {}
    if supply is not None and supply.computer is not None and "provenance" in wanted:
        provenance, missing = make_provenance(store, supply.loaded, supply.computer, summary.reports, supply.remote)
        warnings += missing
    remote = supply.remote if supply is not None else None
    if supply is not None and summary.published is not None and remote is not None and remote.down is None:
        # signing (cryptography, 15 ms to import) and artifacts only when something was pushed
        from orchestrator.pipeline.supply_publish import Attestations, publish_supply
        from orchestrator.registry.artifacts import Registry

        sboms = {
            r.node: s.text for r in summary.reports if "sbom" in wanted and (s := cached_sbom(store, r.node, r.key))
        }
        made = Attestations(kinds=wanted, sboms=sboms, provenance=provenance)
        if isinstance(remote.registry, Registry):
            warnings += publish_supply(supply.loaded.graph, remote.registry, summary, made, supply.sign_key)
        elif wanted or supply.sign_key is not None:
            warnings.append("this registry client cannot attach attestations or signatures: none pushed")
    if not warnings:
        return summary
    return replace(summary, warnings=summary.warnings + tuple(warnings))
