"""Keys for selected targets, with the stat cache and manifest storage wired in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.cache.statcache import StatCache
from orchestrator.cache.store import Store
from orchestrator.keys import KeyComputer, NodeKey
from orchestrator.label import Label
from orchestrator.loading import LoadedWorkspace


def manifest_key(key: str) -> str:
    return f"manifest:{key}"


def inputs_key(digest: str) -> str:
    return f"inputs:{digest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HashStats:
    files_hashed: int
    bytes_hashed: int


def compute_keys(
    loaded: LoadedWorkspace, labels: Iterable[Label], *, cache_dir: str | None
) -> tuple[list[NodeKey], HashStats]:
    """Keys of every node of ``labels``; each new manifest is stored for ``explain``."""
    nodes = [n for label in labels for n in loaded.graph.nodes_of(label)]
    with Store(loaded.workspace.cache_dir(cache_dir)) as store:
        stat_cache = StatCache(store)
        computer = KeyComputer(loaded.root, loaded.graph, stat_cache, algorithm=loaded.workspace.settings.key_digest)
        keys = computer.keys(nodes)
        for digest, manifest in computer.new_inputs.items():
            store.add(inputs_key(digest), [list(entry) for entry in manifest])
        for node_key in keys:
            name = manifest_key(node_key.key)
            if name not in store:
                store.add(name, [list(entry) for entry in node_key.manifest])
    return keys, HashStats(files_hashed=stat_cache.files_hashed, bytes_hashed=stat_cache.bytes_hashed)
