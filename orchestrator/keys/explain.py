"""``orchestrator explain``: why a target would rebuild, from the manifests stored with each key."""

from __future__ import annotations

from typing import Any

from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.core.label import Label
from orchestrator.keys.hashing import keys_with_store
from orchestrator.keys.manifests import changes, load_manifest
from orchestrator.workspace.loading import LoadedWorkspace


def explain(loaded: LoadedWorkspace, store: Store, label: Label) -> list[dict[str, Any]]:
    """Per node of ``label``: its key, its state against the last build, and the manifest entries that changed."""
    result = []
    _, keys = keys_with_store(store, loaded, loaded.graph.nodes_of(label))
    records = Records(store)
    for node_key in keys:
        last = records.last_key(node_key.node)
        old = load_manifest(store, last) if last else None
        entry: dict[str, Any] = {"label": str(label), "platform": node_key.node.platform, "key": node_key.key}
        if last is None:
            entry["state"] = "never built"
        elif last == node_key.key:
            entry["state"] = "up to date" if records.get(last) else "known key, no record"
        elif old is None:
            entry["state"] = "changed (the last build's manifest is not stored)"
        else:
            entry["state"] = "changed"
            entry["last_key"] = last
            entry["changes"] = [{"entry": n, "old": o, "new": v} for n, o, v in changes(store, old, node_key.manifest)]
        result.append(entry)
    return result
