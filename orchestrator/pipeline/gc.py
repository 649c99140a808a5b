"""``orchestrator gc``: remove the content tags this workspace no longer needs, from the engine and a registry.

Every key built leaves ``repository:key-<key>`` behind, in the engine and (pushed) in the registry.
For the targets of this workspace only, and per node (target and platform), ``gc`` keeps:

- the node's current key (what ``orchestrator hash`` computes now), built or not, however old;
- its ``keep`` most recently built keys: the time of a key is its build record's ``built_at`` in the
  local cache, else the image's own creation time (the engine's listing, the registry's image config);
  a key of unknown time is the oldest;
- every image a human tag of the target names (``repository:<tag>``: the same image ID in the engine,
  the same manifest, or a manifest an index under that tag lists, in the registry).

Every other content tag of the targets' repositories goes. In the engine the tag is untagged (the image
goes with its last tag). In the registry a manifest can only be deleted by digest, which removes every
tag pointing at it; so it is deleted only when no tag that stays (a kept content tag, a human tag, any
other tag), no index that stays, and no attestation (a ``sha256-<digest>...`` tag or an OCI subject)
refers to it; otherwise the content tag stays, and the plan says why.

``plan_gc`` decides (pure: it is given what the engine and registry hold); ``collect`` asks them;
``apply_gc`` removes. What is counted as freed:

- engine: the layer storage the engine reports (``docker system df``) before and after the removals;
  a dry run shows instead the ``docker images`` SIZE of the images that would lose their last tag,
  which counts layers they share with kept images, so the real saving is smaller;
- registry: nothing is freed until the registry's own garbage collection (``registry garbage-collect``)
  runs; the plan counts the deleted manifests and the config and layer blobs they use that no kept
  manifest of these repositories uses (an upper bound: another repository may still use a blob).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.core.content import CONTENT_TAG_PREFIX
from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget, Node, RootfsTarget
from orchestrator.core.platforms import normalize
from orchestrator.engine.api import Executor, StoredImage
from orchestrator.keys.hashing import keys_with_store
from orchestrator.registry.client import ManifestInfo
from orchestrator.workspace.loading import LoadedWorkspace

DEFAULT_KEEP = 3
_ATTESTATION_TAG = re.compile(r"^sha256-([0-9a-f]{64})")  # cosign-style tags: sha256-<digest>.att, .sig, ...


class CleanableRegistry(Protocol):
    """What ``gc`` needs of a registry (``orchestrator.registry.client.Registry``, or a fake in tests)."""

    @property
    def address(self) -> str: ...

    def reference(self, repository: str, tag: str) -> str: ...

    def tags(self, repository: str) -> tuple[str, ...]: ...

    def describe(self, repository: str, reference: str) -> ManifestInfo: ...

    def delete_manifest(self, repository: str, digest: str) -> bool: ...


class Place(StrEnum):
    engine = "engine"
    registry = "registry"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentTag:
    """One ``key-<key>`` tag found for a node, in the engine or the registry."""

    place: Place
    reference: str  # engine: "repository:key-..."; registry: "host/remote:key-..."
    repository: str  # the target's repository (as BUILD names it)
    node: Node
    key: str
    image: str  # engine: the image ID; registry: the manifest digest
    built_at: float | None  # Unix time: the build record's, else the image's creation


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """What the engine and the registry hold for the workspace's targets (``collect``'s answer)."""

    tags: tuple[ContentTag, ...]
    human_images: frozenset[tuple[Place, str]]  # images a human tag names: (place, image ID or digest)
    engine_images: tuple[StoredImage, ...] = ()
    manifests: Mapping[tuple[str, str], ManifestInfo] | None = None  # registry: (repository, tag) -> manifest


@dataclass(frozen=True, slots=True, kw_only=True)
class Deletion:
    """One manifest to delete in the registry, and the content tags that go with it."""

    repository: str
    digest: str
    tags: tuple[ContentTag, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GcPlan:
    kept: Mapping[Node, tuple[str, ...]]  # the keys kept per node, newest first (the current one first)
    untag: tuple[ContentTag, ...]  # engine references to untag
    engine_images_deleted: int  # images that lose their last tag
    engine_size: int  # their docker images SIZE (shared layers counted: an upper bound)
    deletions: tuple[Deletion, ...]  # registry manifests to delete
    left: tuple[tuple[ContentTag, str], ...]  # registry content tags that must stay, and why
    registry_bytes: int  # manifests deleted, and blobs no kept manifest uses (an upper bound)


@dataclass(frozen=True, slots=True, kw_only=True)
class GcResult:
    plan: GcPlan
    dry_run: bool
    engine_freed: int | None  # measured layer storage freed (None for a dry run)


# --- the keep rule (pure) ----------------------------------------------------------------------


def kept_keys(
    current: Mapping[Node, str], seen: Mapping[Node, Mapping[str, float | None]], keep: int
) -> dict[Node, tuple[str, ...]]:
    """Per node: its current key, then its ``keep`` most recently built keys (``seen``: key -> time)."""
    kept: dict[Node, tuple[str, ...]] = {}
    for node in sorted(set(current) | set(seen)):
        times = seen.get(node, {})
        # newest first; unknown times last; the key breaks ties, so the choice is deterministic
        newest = sorted(times, key=lambda k: (1, 0.0, k) if (t := times[k]) is None else (0, -t, k))
        chosen = dict.fromkeys(newest[:keep])
        if node in current:
            chosen = {current[node]: None, **chosen}
        kept[node] = tuple(chosen)
    return kept


def plan_gc(current: Mapping[Node, str], held: Held, keep: int) -> GcPlan:
    """What to remove from the engine and the registry, by the keep rule (see the module docstring)."""
    seen: dict[Node, dict[str, float | None]] = {}
    for tag in held.tags:
        times = seen.setdefault(tag.node, {})
        old, new = times.get(tag.key), tag.built_at
        times[tag.key] = new if old is None else old if new is None else max(old, new)
    kept = kept_keys(current, seen, keep)

    def goes(tag: ContentTag) -> bool:
        return tag.key not in kept.get(tag.node, ()) and (tag.place, tag.image) not in held.human_images

    untag = tuple(sorted((t for t in held.tags if t.place is Place.engine and goes(t)), key=_order))
    engine_deleted, engine_size = _engine_images_deleted(held.engine_images, untag)
    deletions, left, registry_bytes = _registry_deletions(
        held, [t for t in held.tags if t.place is Place.registry], goes
    )
    return GcPlan(
        kept=kept,
        untag=untag,
        engine_images_deleted=engine_deleted,
        engine_size=engine_size,
        deletions=deletions,
        left=left,
        registry_bytes=registry_bytes,
    )


def _order(tag: ContentTag) -> tuple[str, str, str]:
    return (str(tag.node), tag.reference, tag.image)


def _engine_images_deleted(images: Sequence[StoredImage], untag: Sequence[ContentTag]) -> tuple[int, int]:
    """How many images lose their last tag, and their summed SIZE."""
    going = {t.reference for t in untag}
    deleted = [image for image in images if image.repo_tags and set(image.repo_tags) <= going]
    return len(deleted), sum(image.size for image in deleted)


def _registry_deletions(
    held: Held, tags: Sequence[ContentTag], goes: Callable[[ContentTag], bool]
) -> tuple[tuple[Deletion, ...], tuple[tuple[ContentTag, str], ...], int]:
    manifests = held.manifests or {}
    going = {(t.repository, t.reference.rpartition(":")[2]): t for t in tags if goes(t)}
    # Every digest something that stays refers to: kept tags, what kept indexes list, attestations' subjects.
    protected: dict[tuple[str, str], str] = {}  # (repository, digest) -> a tag that stays and refers to it
    for (repository, name), info in sorted(manifests.items()):
        if (repository, name) in going:
            continue
        for digest in (info.digest, *info.children, *([info.subject] if info.subject else [])):
            protected.setdefault((repository, digest), name)
        attested = _ATTESTATION_TAG.match(name)
        if attested:
            protected.setdefault((repository, f"sha256:{attested[1]}"), name)
    by_digest: dict[tuple[str, str], list[ContentTag]] = {}
    left: list[tuple[ContentTag, str]] = []
    for (repository, _), tag in sorted(going.items()):
        why = protected.get((repository, tag.image))
        if why is not None:
            left.append((tag, f"its manifest {tag.image} is also what {why} refers to"))
        else:
            by_digest.setdefault((repository, tag.image), []).append(tag)
    deletions = tuple(
        Deletion(repository=repository, digest=digest, tags=tuple(sorted(found, key=_order)))
        for (repository, digest), found in sorted(by_digest.items())
    )
    return deletions, tuple(left), _registry_bytes(manifests, going, deletions)


def _registry_bytes(
    manifests: Mapping[tuple[str, str], ManifestInfo],
    going: Mapping[tuple[str, str], ContentTag],
    deletions: Iterable[Deletion],
) -> int:
    """The deleted manifests' own sizes, and the blobs they use that no manifest that stays uses."""
    deleted = {(d.repository, d.digest) for d in deletions}
    staying_blobs = {
        blob
        for (repository, tag), info in manifests.items()
        if (repository, info.digest) not in deleted
        for blob, _ in info.blobs
    }
    freed_manifests: dict[str, int] = {}
    freed_blobs: dict[str, int] = {}
    for (repository, _), info in manifests.items():
        if (repository, info.digest) in deleted:
            freed_manifests[f"{repository}@{info.digest}"] = info.size
            freed_blobs.update({blob: size for blob, size in info.blobs if blob not in staying_blobs})
    return sum(freed_manifests.values()) + sum(freed_blobs.values())


# --- asking the engine and the registry ---------------------------------------------------------


def current_keys(loaded: LoadedWorkspace, store: Store) -> dict[Node, str]:
    """Every node's key now, as ``orchestrator hash`` computes it."""
    _, keys = keys_with_store(store, loaded, loaded.graph.topological_nodes())
    return {k.node: k.key for k in keys}


def collect(
    loaded: LoadedWorkspace,
    store: Store,
    executor: Executor,
    registry: CleanableRegistry | None = None,
    *,
    mirrors: Sequence[CleanableRegistry] = (),
) -> Held:
    """The content tags of the workspace's targets in the engine (and ``registry``), and the human-tagged images.

    ``mirrors``: registries whose names the engine may hold too (``host/repository:key-...`` after a push).
    """
    records = Records(store)
    targets = [t for t in loaded.graph.targets.values() if isinstance(t, ImageTarget | RootfsTarget)]
    by_label = {str(t.label): t.label for t in targets}
    names: dict[str, tuple[str, Label]] = {}  # engine repository -> (target's repository, label)
    for target in targets:
        names[target.repository] = (target.repository, target.label)
        for mirror in (registry, *mirrors):
            if mirror is not None:
                names[mirror.reference(target.repository, "x").rpartition(":")[0]] = (target.repository, target.label)

    def node_of(key: str, label: Label, platform: str | None) -> tuple[Node | None, float | None]:
        record = records.get(key)
        if record is not None and record.label in by_label:
            return Node(label=by_label[record.label], platform=normalize(record.platform)), _epoch(record.built_at)
        return (Node(label=label, platform=normalize(platform)) if platform else None), None

    found: list[ContentTag] = []
    human: set[tuple[Place, str]] = set()
    images = executor.stored_images()
    for image in images:
        for reference in image.repo_tags:
            name, _, tag = reference.rpartition(":")
            if name not in names:
                continue
            repository, label = names[name]
            target = loaded.graph.targets[label]
            if tag in target.tags:
                human.add((Place.engine, image.image_id))
            if not tag.startswith(CONTENT_TAG_PREFIX):
                continue
            key = tag[len(CONTENT_TAG_PREFIX) :]
            node, built_at = node_of(key, label, None)
            if node is None:
                inspected = executor.inspect(image.image_id)
                node, built_at = node_of(key, label, inspected.platform if inspected is not None else None)
            if node is not None:
                found.append(
                    _tag(Place.engine, reference, repository, node, key, image.image_id, built_at, image.created)
                )
    manifests: dict[tuple[str, str], ManifestInfo] = {}
    if registry is not None:
        for target in targets:
            for tag in registry.tags(target.repository):
                info = registry.describe(target.repository, tag)
                manifests[(target.repository, tag)] = info
                if tag in target.tags:
                    human.update((Place.registry, digest) for digest in (info.digest, *info.children))
                if tag.startswith(CONTENT_TAG_PREFIX):
                    key = tag[len(CONTENT_TAG_PREFIX) :]
                    node, built_at = node_of(key, target.label, info.platform)
                    if node is not None:
                        reference = registry.reference(target.repository, tag)
                        created = _epoch(info.created or "")
                        found.append(
                            _tag(
                                Place.registry, reference, target.repository, node, key, info.digest, built_at, created
                            )
                        )
    return Held(
        tags=tuple(found),
        human_images=frozenset(human),
        engine_images=images,
        manifests=manifests if registry is not None else None,
    )


def _tag(
    place: Place,
    reference: str,
    repository: str,
    node: Node,
    key: str,
    image: str,
    built_at: float | None,
    created: float | None,
) -> ContentTag:
    return ContentTag(
        place=place,
        reference=reference,
        repository=repository,
        node=node,
        key=key,
        image=image,
        built_at=built_at if built_at is not None else (created or None),
    )


def _epoch(text: str) -> float | None:
    """Unix time of an ISO 8601 time (nanoseconds cut to microseconds); None when there is none."""
    if not text:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


# --- the whole command ---------------------------------------------------------------------------


def gc(
    *,
    loaded: LoadedWorkspace,
    store: Store,
    executor: Executor,
    registry: CleanableRegistry | None = None,
    mirrors: Sequence[CleanableRegistry] = (),
    keep: int = DEFAULT_KEEP,
    dry_run: bool = False,
) -> GcResult:
    """Plan by the keep rule and (unless ``dry_run``) remove: engine tags first, then registry manifests."""
    if keep < 0:
        raise ValueError(f"keep must be 0 or more, not {keep}")
    plan = plan_gc(current_keys(loaded, store), collect(loaded, store, executor, registry, mirrors=mirrors), keep)
    if dry_run:
        return GcResult(plan=plan, dry_run=True, engine_freed=None)
    before = executor.layers_size() if plan.untag else 0
    for tag in plan.untag:
        executor.remove_image(tag.reference)
    freed = max(0, before - executor.layers_size()) if plan.untag else 0
    if registry is not None:
        for deletion in plan.deletions:
            registry.delete_manifest(deletion.repository, deletion.digest)
    return GcResult(plan=plan, dry_run=False, engine_freed=freed)


if TYPE_CHECKING:
    from orchestrator.registry.client import Registry

    _conforms: CleanableRegistry = Registry("registry.test")
