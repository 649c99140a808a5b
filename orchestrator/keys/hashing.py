"""Keys for selected targets, with the stat cache and manifest storage wired in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.cache import names
from orchestrator.cache.statcache import StatCache
from orchestrator.cache.store import Store
from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.keys import parallel
from orchestrator.keys.keys import KeyComputer, NodeKey
from orchestrator.workspace.loading import LoadedWorkspace


@dataclass(frozen=True, slots=True, kw_only=True)
class HashStats:
    files_hashed: int
    bytes_hashed: int


def keys_with_store(store: Store, loaded: LoadedWorkspace, nodes: Iterable[Node]) -> tuple[KeyComputer, list[NodeKey]]:
    """Keys of ``nodes`` (parents computed on the way); new manifests stored for ``explain``."""
    computer = KeyComputer(
        loaded.root,
        loaded.graph,
        StatCache(store),
        algorithm=loaded.workspace.settings.key_digest,
        pins=None if loaded.lock is None else loaded.lock.digests(),
        bases_with_triggers=() if loaded.lock is None else loaded.lock.bases_with_triggers(),
    )
    nodes = list(nodes)
    todo = computer.missing_inputs(nodes)
    if parallel.usable(len(todo)):
        parallel.prefetch_inputs(computer, todo)  # on every core, when there is enough to hash
    keys = computer.keys(nodes)
    for digest, manifest in computer.new_inputs.items():
        store.add(names.inputs(digest), [list(entry) for entry in manifest])
    for node_key in keys:
        name = names.manifest(node_key.key)
        if name not in store:
            store.add(name, [list(entry) for entry in node_key.manifest])
    return computer, keys


def compute_keys(
    loaded: LoadedWorkspace, labels: Iterable[Label], *, cache_dir: str | None
) -> tuple[KeyComputer, list[NodeKey], HashStats]:
    """Keys of every node of ``labels`` (and the computer, which can say what each target's inputs are)."""
    nodes = [n for label in labels for n in loaded.graph.nodes_of(label)]
    with Store(loaded.workspace.cache_dir(cache_dir)) as store:
        computer, keys = keys_with_store(store, loaded, nodes)
    stats = computer.stat_cache
    return computer, keys, HashStats(files_hashed=stats.files_hashed, bytes_hashed=stats.bytes_hashed)
