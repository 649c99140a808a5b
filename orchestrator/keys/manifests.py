"""Stored manifests, and what differs between two of them (for ``explain`` and dry-run reasons)."""

from __future__ import annotations

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.keys.inputs import Manifest

Change = tuple[str, str | None, str | None]  # (entry name, old value, new value)


def load_manifest(store: Store, key: str) -> Manifest | None:
    value = store.get(names.manifest(key))
    return None if value is None else tuple((str(a), str(b)) for a, b in value)


def expanded(store: Store, manifest: Manifest) -> dict[str, str]:
    """The manifest as a dict, its ``inputs`` digest replaced by the input entries it stands for."""
    result: dict[str, str] = {}
    for name, value in manifest:
        inputs = store.get(names.inputs(value)) if name == "inputs" else None
        if inputs is None:
            result[name] = value
        else:
            result.update({str(a): str(b) for a, b in inputs})
    return result


def changes(store: Store, old: Manifest, new: Manifest) -> list[Change]:
    """Entries that differ, in name order; ``inputs`` compared entry by entry when both are stored."""
    before, after = expanded(store, old), expanded(store, new)
    return [
        (name, before.get(name), after.get(name))
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]


def describe(change: Change) -> str:
    name, old, new = change
    if old is None:
        return f"added {name}"
    if new is None:
        return f"removed {name}"
    return f"changed {name}"
