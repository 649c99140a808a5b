"""``orchestrator explain``: why a target would rebuild, from the manifests stored with each key."""

from __future__ import annotations

from typing import Any

from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget
from orchestrator.keys.hashing import keys_with_store
from orchestrator.keys.keys import KeyComputer
from orchestrator.keys.manifests import changes, load_manifest
from orchestrator.workspace.loading import LoadedWorkspace


def explain(loaded: LoadedWorkspace, store: Store, label: Label, engine: str | None = None) -> list[dict[str, Any]]:
    """Per node of ``label``: its key, its state against the last build, and the manifest entries that changed.

    ``engine``: whose records say "up to date" (``core/engines.py: records_namespace``; None: the local socket's).
    """
    result = []
    computer, keys = keys_with_store(store, loaded, loaded.graph.nodes_of(label))
    inputs = inputs_of(computer, label)
    records = Records(store, engine)
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
        entry["inputs"] = inputs
        result.append(entry)
    return result


def inputs_of(computer: KeyComputer, label: Label) -> dict[str, Any]:
    """What a target's key hashes of its files, and why each is an input.

    ``context``: ``precise`` (what the Dockerfile reads), ``whole`` (the whole context, with the
    ``reason``), ``srcs`` (the declared sources) or ``rootfs``.
    """
    target = computer.graph.targets[label]
    if not isinstance(target, ImageTarget):
        return {"context": "rootfs", "entries": []}
    selection = computer.selection_of(label)
    if selection is None:
        entries = [{"path": e.path, "why": "declared in srcs"} for e in computer.context_of(label)]
        return {"context": "srcs", "entries": entries}
    result: dict[str, Any] = {"context": "whole" if selection.whole is not None else "precise"}
    if selection.whole is not None:
        result["reason"] = selection.whole
    result["entries"] = [{"path": path, "why": why} for path, why in selection.why.items()]
    return result


def inputs_lines(inputs: dict[str, Any], *, limit: int = 50) -> list[str]:
    """``explain``'s listing of a target's inputs: each path and why it is one (``limit`` lines at most)."""
    entries = inputs["entries"]
    count = f"{len(entries)} context {'entry' if len(entries) == 1 else 'entries'}"
    head = {
        "precise": f"inputs: {count}, what the Dockerfile reads",
        "whole": f"inputs: the whole context ({count}), because {inputs.get('reason')}",
        "srcs": f"inputs: {count}, the declared srcs",
        "rootfs": "inputs: the rootfs image's tarball, script and srcs",
    }[inputs["context"]]
    lines = [head]
    width = max((len(e["path"]) for e in entries[:limit]), default=0)
    lines += [f"  {e['path']:<{width}}  {e['why']}" for e in entries[:limit]]
    if len(entries) > limit:
        lines.append(f"  ... and {len(entries) - limit} more (-o json lists them all)")
    return lines
