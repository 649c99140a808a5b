"""What a build has to do: for every node of the selection and its dependencies, cached or to build.

A record counts only when the engine's content tag for the key still names the recorded image ID
and that image carries the key label; otherwise the node is rebuilt, and the reason says why. A
key with no record at all (a new or quarantined cache) whose content tag the engine holds with the
right key label counts as cached: its record is re-made from what the engine knows. With a
registry cache, a node to build whose content tag the registry holds, with the same key label and
platform, is not built (``REMOTE``); it is pulled only when a node built here rests on it. Everything
here is pure: it takes what the cache, the engine and the registry hold as data, and describes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from orchestrator.cache.records import BuildRecord
from orchestrator.core.content import KEY_LABEL, content_image, image_problem
from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.engine.api import ImageSummary
from orchestrator.keys.keys import NodeKey
from orchestrator.registry.client import RemoteImage


class Action(StrEnum):
    CACHED = "cached"  # the engine has it
    REMOTE = "remote"  # the registry cache has it: not built here (pulled if ``pull``)
    BUILD = "build"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedNode:
    node: Node
    key: str
    image: str  # repository:key-<key>
    action: Action
    reason: str
    record: BuildRecord | None  # the trusted record of a cached node
    remote: RemoteImage | None = None  # the registry's verified copy, when the registry has one
    pull: bool = False  # REMOTE only: a node built here rests on it (or --load asked for it)
    poisoned: str | None = None  # what is wrong with the registry's image for this content tag
    forced: bool = False  # --no-cache: built whatever any cache holds, without the engine's layer cache
    remade: bool = False  # CACHED from the engine's content tag alone: ``record`` is to be written
    engine: str | None = None  # CACHED: the engine whose record (or content tag) it is; a dry run's BUILD: placed on
    held: tuple[tuple[str, str], ...] = ()  # CACHED: (engine URL, image ID) of every engine holding it


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    nodes: tuple[PlannedNode, ...]  # parents before children
    selected: frozenset[Label]
    images: Mapping[str, ImageSummary] | None = None  # the engine's images when planned

    def by_node(self) -> dict[Node, PlannedNode]:
        return {p.node: p for p in self.nodes}

    @property
    def to_build(self) -> list[PlannedNode]:
        return [p for p in self.nodes if p.action is Action.BUILD]

    @property
    def to_pull(self) -> list[PlannedNode]:
        return [p for p in self.nodes if p.action is Action.REMOTE and p.pull]

    def count(self, action: Action) -> int:
        return sum(1 for p in self.nodes if p.action is action)


def check_record(
    record: BuildRecord | None, key: str, images: Mapping[str, ImageSummary] | None
) -> tuple[BuildRecord | None, str]:
    """The record if it can be trusted, else None and why not.

    ``images``: what the engine holds under each ``repository:tag`` (one listing; None without an
    engine, when records cannot be checked).
    """
    if record is None:
        return None, "no record for this key"
    if images is None:
        return record, "recorded (image not checked: no daemon)"
    found = images.get(record.image)
    if found is None:
        return None, f"image {record.image} is gone from the engine"
    if found.labels.get(KEY_LABEL) != key:
        return None, f"image {record.image} carries another key label"
    if found.image_id != record.image_id:
        return None, f"{record.image} names {_short(found.image_id)}, not the recorded {_short(record.image_id)}"
    return record, "recorded, image present"


def remade_record(node: Node, key: str, image: str, images: Mapping[str, ImageSummary] | None) -> BuildRecord | None:
    """A record for a key nobody recorded, when the engine holds its content tag with the key label."""
    found = None if images is None else images.get(image)
    if found is None or found.labels.get(KEY_LABEL) != key:
        return None
    return BuildRecord(
        key=key,
        label=str(node.label),
        platform=node.platform,
        image=image,
        image_id=found.image_id,
        duration_s=0.0,
        built_at="",
        log="",
    )


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """What the local cache says of the keys being planned (read before planning)."""

    records: Mapping[str, BuildRecord]  # by key, the records that exist
    new_key_reasons: Mapping[str, str]  # by key, for keys without a record: what changed since the last build


def make_plan(
    *,
    keys: list[NodeKey],
    order: list[Node],
    repositories: Mapping[Label, str],
    selected: frozenset[Label],
    known: Known,
    images: Mapping[str, ImageSummary] | None,
    no_cache: bool = False,
) -> Plan:
    """Cached or to build, for every node of ``order``: pure, from what the cache and the engine hold.

    ``images``: the engine's listing (None without an engine: records are then trusted unchecked).
    """
    by_node = {k.node: k for k in keys}
    planned = []
    for node in order:
        node_key = by_node[node]
        image = content_image(repositories[node.label], node_key.key)
        if no_cache and node.label in selected:
            planned.append(
                PlannedNode(
                    node=node,
                    key=node_key.key,
                    image=image,
                    action=Action.BUILD,
                    reason="--no-cache",
                    record=None,
                    forced=True,
                )
            )
            continue
        record, reason = check_record(known.records.get(node_key.key), node_key.key, images)
        remade = False
        if record is None and node_key.key not in known.records:
            record = remade_record(node, node_key.key, image, images)
            remade = record is not None
            if remade:
                reason = "no record, but the engine holds its content tag with the key label"
            else:
                reason = known.new_key_reasons.get(node_key.key, "never built")
        action = Action.CACHED if record is not None else Action.BUILD
        planned.append(
            PlannedNode(
                node=node, key=node_key.key, image=image, action=action, reason=reason, record=record, remade=remade
            )
        )
    return Plan(nodes=tuple(planned), selected=selected, images=images)


def use_remote(
    plan: Plan,
    found: Mapping[Node, RemoteImage | None],
    parents: Mapping[Node, Iterable[Node]],
    *,
    load: Iterable[Node] = (),
) -> Plan:
    """The plan once the registry was asked: ``found`` holds what it has for each node's content tag.

    A node to build whose registry copy passes the check becomes REMOTE; one whose copy
    fails :func:`image_problem` (a poisoned or clashing tag) is built, and its reason says what was found. Every
    planned node keeps its verified registry copy in ``remote`` (a push can skip it). A REMOTE node
    is pulled when a node still to build rests on it, or when it is in ``load``.
    """
    updated: dict[Node, PlannedNode] = {}
    for planned in plan.nodes:
        image = found.get(planned.node)
        problem = (
            None
            if image is None
            else image_problem(image.labels, image.platform, key=planned.key, expected_platform=planned.node.platform)
        )
        if planned.forced:
            pass  # --no-cache: built here whatever the registry holds
        elif image is not None and problem is None:
            if planned.action is Action.BUILD:
                planned = replace(planned, action=Action.REMOTE, reason="in the registry cache", remote=image)
            else:
                planned = replace(planned, remote=image)
        elif problem is not None and planned.action is Action.BUILD:
            reason = f"the registry's {planned.image} {problem}: not used, rebuilt"
            planned = replace(planned, reason=reason, poisoned=problem)
        updated[planned.node] = planned
    wanted = set(load)
    for planned in updated.values():
        if planned.action is Action.BUILD:
            wanted.update(parents.get(planned.node, ()))
    for node in wanted:
        planned = updated[node]
        if planned.action is Action.REMOTE:
            updated[node] = replace(planned, pull=True)
    return replace(plan, nodes=tuple(updated[p.node] for p in plan.nodes))


def merge_engines(plans: Sequence[tuple[str, Plan]]) -> Plan:
    """One plan from each engine's (``(url, plan)``, the home engine first): a node is cached when any
    engine holds it, on the first that does; ``held`` lists every engine that does."""
    home = plans[0][1]
    by_engine = [(url, plan.by_node()) for url, plan in plans]
    merged = []
    for planned in home.nodes:
        cached = [(url, nodes[planned.node]) for url, nodes in by_engine if nodes[planned.node].action is Action.CACHED]
        held = tuple((url, p.record.image_id) for url, p in cached if p.record is not None)
        if cached:
            url, chosen = cached[0]
            merged.append(replace(chosen, engine=url, held=held))
        else:
            merged.append(planned)
    return replace(home, nodes=tuple(merged))
