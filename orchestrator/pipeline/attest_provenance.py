"""The provenance of each image after a build (``--attest provenance``): facts gathered, statement cached.

    node report + graph + images.lock + keys + git  -> BuildFacts (supply/provenance.py)
    registry copy of the content tag, else image ID  -> the subject
    the store: ``provenance:<key> <platform>``       -> the statement, made once per key and platform

The subject is the manifest digest of the node's image in the registry cache (looked up by its
content tag: the same manifest the human tags name after ``--push``), named by the registry's
repository (``127.0.0.1:5000/company/base``). Without a registry, or when the registry does not hold
the image, it is the local image ID (a digest of the image's config, not of a manifest) named by the
local repository: what ``docker inspect`` shows, not what a registry would serve.

The first statement made for a key is kept: a later run that finds the image cached says how it was
built, not how it was found. Only its subject is brought up to date (the image pushed since, or a
registry set). The input manifest is named by its digest (``KeyComputer.inputs_digest``:
``orchestrator explain`` lists the entries), not by the key, which also hashes the parents' keys
and the platform (those are listed on their own).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.core.content import content_tag
from orchestrator.core.model import ImageTarget, Node
from orchestrator.keys.keys import KEY_SCHEMA, KeyComputer
from orchestrator.pipeline.hermetic import pins_of
from orchestrator.pipeline.summary import NodeReport, NodeStatus
from orchestrator.registry.cache import RemoteCache
from orchestrator.registry.client import RegistryError, RegistryUnavailable
from orchestrator.supply.provenance import (
    BasePin,
    BuildFacts,
    GitSource,
    ParentImage,
    Subject,
    git_uri,
    provenance_json,
)
from orchestrator.workspace.loading import LoadedWorkspace
from orchestrator.workspace.vcs import git_value

UNKNOWN = "unknown"  # the builder or engine of an image this run did not build
ATTESTABLE = frozenset({NodeStatus.BUILT, NodeStatus.CACHED, NodeStatus.PULLED, NodeStatus.REMOTE_CACHED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    node: Node
    key: str
    subject: Subject
    text: str  # the in-toto statement, JSON
    cached: bool  # the statement's facts came from the store


def git_source(root: Path) -> GitSource | None:
    """The checkout's HEAD and where it came from (origin), None outside a git checkout."""
    commit = git_value(root, "rev-parse", "HEAD")
    if commit is None:
        return None
    top = git_value(root, "rev-parse", "--show-toplevel") or str(root)
    return GitSource(uri=git_uri(git_value(root, "remote", "get-url", "origin"), top), commit=commit)


def subjects(reports: Sequence[NodeReport], loaded: LoadedWorkspace, remote: RemoteCache | None) -> dict[Node, Subject]:
    """The subject of each report's image: its registry manifest, else its local image ID (module docstring)."""
    found: dict[Node, Subject] = {}
    registry = remote.registry if remote is not None and remote.down is None else None
    repositories = {r.node: loaded.graph.targets[r.node.label].repository for r in reports}
    if registry is not None:
        wanted = [(repositories[r.node], content_tag(r.key)) for r in reports]
        try:
            copies = registry.lookup_many(wanted)
        except (RegistryUnavailable, RegistryError):
            copies = {}
        for report in reports:
            repository = repositories[report.node]
            copy = copies.get((repository, content_tag(report.key)))
            if copy is not None:
                name = registry.reference(repository, "x").rpartition(":")[0]
                found[report.node] = Subject(name=name, digest=copy.digest)
    for report in reports:
        if report.node not in found and report.image_id and report.image_id.startswith("sha256:"):
            found[report.node] = Subject(name=repositories[report.node], digest=report.image_id)
    return found


def build_facts(
    loaded: LoadedWorkspace,
    computer: KeyComputer,
    report: NodeReport,
    keys: Mapping[Node, str],
    digests: Mapping[Node, Subject],
    source: GitSource | None,
) -> BuildFacts:
    """What is known of how ``report``'s image was built (``keys``, ``digests``: of the other nodes)."""
    node = report.node
    graph = loaded.graph
    target = graph.targets[node.label]
    if isinstance(target, ImageTarget):
        recipe, build_args = target.dockerfile, target.build_args
    else:  # rootfs_image: its tarball, else the script writing it
        recipe, build_args = target.tarball or target.script or "", ()
    bases = [
        BasePin(reference=reference, digest=pin.digest, source=pin.source)
        for reference, pin in pins_of(graph, loaded.lock, node).items()
    ]
    parents = {}
    for parent in graph.node_deps[node].parents:
        if parent.node in keys:
            known = digests.get(parent.node)
            parents[parent.node] = ParentImage(
                label=str(parent.node.label),
                key=keys[parent.node],
                digest=None if known is None else known.digest,
            )
    return BuildFacts(
        label=str(node.label),
        platform=node.platform,
        key=report.key,
        key_algorithm=computer.algorithm,
        key_schema=KEY_SCHEMA,
        dockerfile=recipe,
        inputs_digest=computer.inputs_digest(node.label),
        builder=report.builder or UNKNOWN,
        engine=report.engine or UNKNOWN,
        build_args=build_args,
        bases=bases,
        parents=list(parents.values()),
        source=source,
    )


def cached_provenance(store: Store, node: Node, key: str, subject: Subject) -> Provenance | None:
    """The statement stored for ``key`` on the node's platform, about ``subject``; None when none is stored."""
    text = store.get(names.provenance(key, node.platform))
    if not isinstance(text, str):
        return None
    try:
        statement = json.loads(text)
        current = statement["subject"]
    except (ValueError, KeyError, TypeError):
        return None  # not a statement: made again
    wanted = [{"name": subject.name, "digest": {"sha256": subject.digest.removeprefix("sha256:")}}]
    if current != wanted:  # pushed since, or a registry set since: the same build, another subject
        statement["subject"] = wanted
        text = json.dumps(statement, indent=2, sort_keys=True) + "\n"
        store.set(names.provenance(key, node.platform), text)
    return Provenance(node=node, key=key, subject=subject, text=text, cached=True)


def make_provenance(
    store: Store,
    loaded: LoadedWorkspace,
    computer: KeyComputer,
    reports: Sequence[NodeReport],
    remote: RemoteCache | None,
) -> tuple[dict[Node, Provenance], list[str]]:
    """The provenance of each report's image (stored, else made and stored), and a warning for each one missing."""
    chosen = [r for r in reports if r.status in ATTESTABLE]
    digests = subjects(chosen, loaded, remote)
    keys = {r.node: r.key for r in reports}
    source = git_source(loaded.root)
    made: dict[Node, Provenance] = {}
    warnings: list[str] = []
    for report in chosen:
        subject = digests.get(report.node)
        if subject is None:
            warnings.append(f"{report.node}: no provenance: its image is neither in the engine nor in the registry")
            continue
        known = cached_provenance(store, report.node, report.key, subject)
        if known is not None:
            made[report.node] = known
            continue
        try:
            facts = build_facts(loaded, computer, report, keys, digests, source)
            text = provenance_json(subjects=[subject], build=facts)
        except (ValueError, KeyError) as exc:
            warnings.append(f"{report.node}: no provenance: {exc}")
            continue
        store.set(names.provenance(report.key, report.node.platform), text)
        made[report.node] = Provenance(node=report.node, key=report.key, subject=subject, text=text, cached=False)
    return made, warnings
