"""Every key namespace of the local store, in one place.

These names are the cache's layout: changing one orphans what earlier runs stored under it (and a
test keeps them fixed). Each function returns the store key for one kind of value.
"""

from __future__ import annotations

import hashlib
import json

from orchestrator.core.model import Node


def record(key: str, engine: str | None = None) -> str:
    """A build record: what was built (or pulled) for a content key, on one engine.

    ``engine`` None is the local socket's engine (the names every earlier run wrote); another engine's
    records are its own (``record@tcp://10.0.0.5:2376:<key>``): an image ID means nothing elsewhere.
    """
    return f"record:{key}" if engine is None else f"record@{engine}:{key}"


def last_key(node: Node) -> str:
    """The key a node had at its last build or cache hit (for ``explain`` and the plan's reasons)."""
    return f"last:{node.label} {node.platform}"


def manifest(key: str) -> str:
    """The manifest a key was computed from."""
    return f"manifest:{key}"


def inputs(digest: str) -> str:
    """An input manifest (a target's Dockerfile and context entries), by its digest."""
    return f"inputs:{digest}"


def tree(algorithm: str, kind: str, *where: object) -> str:
    """The stat cache's per-entry record of one tree of files (a context, a rootfs's files)."""
    return ":".join(["tree", algorithm, kind, *(str(w) for w in where)])


def quick(tree_key: str) -> str:
    """The stat cache's one-digest summary of a tree (the fast path of a warm run)."""
    return f"quick:{tree_key}"


def load(schema: str, version: str, platform: str, root: str) -> str:
    """The load cache's record of a workspace (its packages and graph, and what loading read)."""
    return f"load:{schema}:{version}:{platform}:{root}"


def test_result(image_key: str, platform: str, spec: str) -> str:
    """The results of one image test definition, on one image and platform."""
    payload = json.dumps([image_key, platform, spec], separators=(",", ":"))
    return "test:" + hashlib.sha256(payload.encode()).hexdigest()


def provenance(key: str, platform: str) -> str:
    """The provenance statement (in-toto JSON text) of the image a key names, on one platform."""
    return f"provenance:{key} {platform}"


def sbom(key: str, platform: str) -> str:
    """The SBOM (CycloneDX JSON text) of the image a key names, on one platform."""
    return f"sbom:{key} {platform}"


def scan(key: str, platform: str, command_digest: str) -> str:
    """A passed scan of the image a key names, on one platform, by one scan command (its digest)."""
    return f"scan:{key} {platform} {command_digest}"
