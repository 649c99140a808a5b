"""Loading results (packages, targets, graph edges) reused while their inputs are unchanged.

Evaluating 1,000 BUILD files and analysing 1,000 Dockerfiles costs more than the rest of a query.
The result is stored with the lstat signature of every path it was derived from (see witness.py);
a later run checks those signatures -- a few thousand lstat calls -- and rebuilds the graph from
the record. Any difference, or a path modified within the racy window of the recording, means a
fresh load. The record is keyed by the workspace root, the host platform (the default platform
of targets) and the orchestrator's version.
"""

from __future__ import annotations

from typing import Any

from orchestrator import __version__
from orchestrator.cache import names
from orchestrator.cache.statcache import RACY_WINDOW_NS
from orchestrator.cache.store import Store
from orchestrator.cache.witness import Signature, Witness, unchanged
from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget, ImageTestTarget, LoadedPackage, Node, RootfsTarget, Target
from orchestrator.core.platforms import host_platform
from orchestrator.graph.graph import NodeDeps, ParentRef, TargetGraph

SCHEMA = "4"  # 4: platforms normalized and checked when BUILD files load (step 9)


def record_name(root: str) -> str:
    return names.load(SCHEMA, __version__, host_platform(), root)


def _label(text: str) -> Label:
    package, _, name = text[2:].rpartition(":")
    return Label(package, name)


def _pairs(value: list[list[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((a, b) for a, b in value)


def target_to_json(target: Target) -> dict[str, Any]:
    common = {
        "label": str(target.label),
        "repository": target.repository,
        "tags": list(target.tags),
        "platforms": None if target.platforms is None else list(target.platforms),
        "labels": [list(p) for p in target.labels],
        "build_file": target.build_file,
    }
    if isinstance(target, RootfsTarget):
        return {
            "kind": "rootfs_image",
            **common,
            "tarball": target.tarball,
            "script": target.script,
            "srcs": list(target.srcs),
        }
    return {
        "kind": "image",
        **common,
        "dockerfile": target.dockerfile,
        "context": target.context,
        "srcs": None if target.srcs is None else list(target.srcs),
        "build_args": [list(p) for p in target.build_args],
        "target": target.target,
        "base": None if target.base is None else [str(b) for b in target.base],
        "hermetic": target.hermetic,
        "lint_ignore": [list(p) for p in target.lint_ignore],
        "secrets": [list(p) for p in target.secrets],
        "ssh": list(target.ssh),
    }


def test_to_json(test: ImageTestTarget) -> dict[str, Any]:
    return {
        "label": str(test.label),
        "image": test.image,
        "spec": test.spec,
        "platforms": None if test.platforms is None else list(test.platforms),
        "build_file": test.build_file,
    }


def test_from_json(data: dict[str, Any]) -> ImageTestTarget:
    return ImageTestTarget(
        label=_label(data["label"]),
        image=data["image"],
        spec=data["spec"],
        platforms=None if data["platforms"] is None else tuple(data["platforms"]),
        build_file=data["build_file"],
    )


def target_from_json(data: dict[str, Any]) -> Target:
    platforms = None if data["platforms"] is None else tuple(data["platforms"])
    if data["kind"] == "rootfs_image":
        return RootfsTarget(
            label=_label(data["label"]),
            tarball=data["tarball"],
            script=data["script"],
            srcs=tuple(data["srcs"]),
            repository=data["repository"],
            tags=tuple(data["tags"]),
            platforms=platforms,
            labels=_pairs(data["labels"]),
            build_file=data["build_file"],
        )
    return ImageTarget(
        label=_label(data["label"]),
        dockerfile=data["dockerfile"],
        context=data["context"],
        srcs=None if data["srcs"] is None else tuple(data["srcs"]),
        repository=data["repository"],
        tags=tuple(data["tags"]),
        build_args=_pairs(data["build_args"]),
        target=data["target"],
        platforms=platforms,
        labels=_pairs(data["labels"]),
        base=None if data["base"] is None else tuple(_label(b) for b in data["base"]),
        hermetic=data["hermetic"],
        lint_ignore=_pairs(data["lint_ignore"]),
        secrets=_pairs(data.get("secrets", [])),
        ssh=tuple(data.get("ssh", [])),
        build_file=data["build_file"],
    )


def _node(data: list[str]) -> Node:
    return Node(_label(data[0]), data[1])


def save(
    store: Store, root: str, witness: Witness, started_ns: int, packages: tuple[LoadedPackage, ...], graph: TargetGraph
) -> None:
    store.set(
        record_name(root),
        {
            "t": started_ns,
            "w": witness.signatures(),
            "l": {rel: list(listing) for rel, listing in witness.listings.items()},
            "packages": [
                {
                    "package": p.package,
                    "build_file": p.build_file,
                    "loads": list(p.loads),
                    "targets": [target_to_json(t) for t in p.targets],
                    "tests": [test_to_json(t) for t in p.tests],
                }
                for p in packages
            ],
            "deps": [
                [
                    [str(node.label), node.platform],
                    [[p.reference, p.line, p.kind, str(p.node.label), p.node.platform] for p in deps.parents],
                    list(deps.externals),
                ]
                for node, deps in graph.node_deps.items()
            ],
            "owners": {ref: str(label) for ref, label in graph.owners.items()},
        },
    )


def restore(store: Store, root: str) -> tuple[tuple[LoadedPackage, ...], TargetGraph] | None:
    """The recorded load of ``root`` when nothing it came from changed, else None."""
    record = store.get(record_name(root))
    if record is None:
        return None
    recorded: dict[str, Signature] = {k: None if v is None else tuple(v) for k, v in record["w"].items()}
    listings = {rel: (kind, digest) for rel, (kind, digest) in record["l"].items()}
    if not unchanged(root, recorded, record["t"], RACY_WINDOW_NS, listings):
        return None
    packages = tuple(
        LoadedPackage(
            package=p["package"],
            build_file=p["build_file"],
            loads=tuple(p["loads"]),
            targets=tuple(target_from_json(t) for t in p["targets"]),
            tests=tuple(test_from_json(t) for t in p["tests"]),
        )
        for p in record["packages"]
    )
    deps = {
        _node(node): NodeDeps(
            parents=tuple(
                ParentRef(reference=r, line=line, kind=kind, node=Node(_label(label), platform))
                for r, line, kind, label, platform in parents
            ),
            externals=tuple(externals),
        )
        for node, parents, externals in record["deps"]
    }
    targets = {t.label: t for p in packages for t in p.targets}
    owners = {ref: _label(label) for ref, label in record["owners"].items()}
    return packages, TargetGraph(targets, deps, owners)
