"""The store's key names are the cache's layout: they never change without a migration."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cache import names
from orchestrator.core.label import Label
from orchestrator.core.model import Node


def test_every_namespace_keeps_its_name() -> None:
    node = Node(label=Label("apps/web", "web"), platform="linux/arm64")
    assert names.record("k1") == "record:k1"
    assert names.last_key(node) == "last://apps/web:web linux/arm64"
    assert names.manifest("k1") == "manifest:k1"
    assert names.inputs("d1") == "inputs:d1"
    tree = names.tree("xxh3", "dockerignore", Path("/ws/apps/web"), Path("/ws/apps/web/Dockerfile"))
    assert tree == "tree:xxh3:dockerignore:/ws/apps/web:/ws/apps/web/Dockerfile"
    assert (
        names.tree("sha256", "rootfs", Path("/ws"), Label("rootfs", "debian"))
        == "tree:sha256:rootfs:/ws://rootfs:debian"
    )
    assert names.quick(tree) == "quick:" + tree
    assert names.load("3", "0.1.0", "linux/amd64", "/ws") == "load:3:0.1.0:linux/amd64:/ws"
    assert names.sbom("k1", "linux/arm64") == "sbom:k1 linux/arm64"
    assert names.provenance("k1", "linux/arm64") == "provenance:k1 linux/arm64"
    assert names.scan("k1", "linux/arm64", "d1") == "scan:k1 linux/arm64 d1"
    assert names.test_result("k1", "linux/amd64", "{}") == (
        "test:" + __import__("hashlib").sha256(b'["k1","linux/amd64","{}"]').hexdigest()
    )
