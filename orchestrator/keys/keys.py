"""Content keys: a digest of a canonical, length-prefixed manifest, Merkle over parents' keys.

A manifest is a sorted-by-construction list of ``(name, value)`` entries: the key schema version,
the rule kind and every attribute that changes the output, the Dockerfile's bytes, every context
entry (path, type, exec bit, link target or content hash), the platform, the external bases (with
their digests from images.lock, else "unpinned") and the parents' keys. Nothing machine-specific
enters it: no absolute path, mtime, owner or host name. The manifest is stored under its key so
``explain`` can later say what changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cache import names
from orchestrator.cache.statcache import StatCache, StatEntry, now_ns
from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget, Node, RootfsTarget
from orchestrator.graph.graph import TargetGraph
from orchestrator.keys.context import (
    ContextEntry,
    EntryKind,
    context_entries,
    declared_entries,
)
from orchestrator.keys.digests import file_hasher
from orchestrator.keys.inputs import Manifest, digest_manifest, inputs_manifest, rootfs_manifest
from orchestrator.keys.selection import Selection, select_inputs
from orchestrator.keys.target_reads import never_inputs, target_reads

KEY_SCHEMA = "3"  # 2: platforms normalized before hashing (step 9); 3: precise inputs (step 8)
DOCKERFILE = "\0dockerfile"  # the Dockerfile's place in a tree (no real path starts with NUL)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeKey:
    node: Node
    key: str
    manifest: Manifest


class KeyComputer:
    """Computes (and memoises) the key of every node it is asked for, parents first."""

    def __init__(
        self,
        root: Path,
        graph: TargetGraph,
        stat_cache: StatCache,
        *,
        algorithm: str = "xxh3",
        pins: Mapping[tuple[str, str], str] | None = None,
        bases_with_triggers: Iterable[str] = (),
    ) -> None:
        self.root = root
        self.pins = dict(pins or {})  # (external reference, platform) -> locked digest
        self.bases_with_triggers = frozenset(bases_with_triggers)  # images.lock: pinned bases with ONBUILD
        self.graph = graph
        self.stat_cache = stat_cache
        self.algorithm = algorithm
        self._hash_file = file_hasher(algorithm)
        self._inputs: dict[Label, Manifest] = {}
        self._keys: dict[Node, NodeKey] = {}
        self.new_inputs: dict[str, Manifest] = {}  # input manifests computed in this run, by digest
        self.entries: dict[Label, tuple[ContextEntry, ...]] = {}  # the context each image target sends
        self.selections: dict[Label, Selection] = {}  # precise inputs and why, for image targets without srcs

    def missing_inputs(self, nodes: Iterable[Node]) -> list[Label]:
        """The targets of ``nodes`` and their ancestors whose inputs are not hashed yet."""
        closure = self.graph.nodes_with_ancestors(set(nodes))
        return sorted({node.label for node in closure} - self._inputs.keys())

    def keys(self, nodes: Iterable[Node]) -> list[NodeKey]:
        wanted = set(nodes)
        closure = self.graph.nodes_with_ancestors(wanted)
        for node in self.graph.topological_nodes(closure):
            self.key(node)
        return [self._keys[n] for n in sorted(wanted)]

    def key(self, node: Node) -> NodeKey:
        if node not in self._keys:
            manifest = self._manifest(node)
            self._keys[node] = NodeKey(node=node, key=digest_manifest(manifest, self.algorithm), manifest=manifest)
        return self._keys[node]

    def _manifest(self, node: Node) -> Manifest:
        target = self.graph.targets[node.label]
        deps = self.graph.node_deps[node]
        entries: list[tuple[str, str]] = [
            ("schema", KEY_SCHEMA),
            ("digest", self.algorithm),
            ("kind", target.kind),
            ("platform", node.platform),
        ]
        entries += [(f"label {k}", v) for k, v in target.labels]
        entries += self.target_inputs(node.label)
        entries += [(f"external {ref}", self.pins.get((ref, node.platform), "unpinned")) for ref in deps.externals]
        entries += [
            (f"parent {p.reference}", self.key(p.node).key)
            for p in sorted(deps.parents, key=lambda p: (p.reference, p.line))
        ]
        return tuple(entries)

    def target_inputs(self, label: Label) -> Manifest:
        """The platform-independent inputs of a target (hashed once for all its platforms)."""
        if label not in self._inputs:
            self._inputs[label] = self._compute_inputs(label)
        return self._inputs[label]

    def inputs_digest(self, label: Label) -> str:
        """The digest of a target's input manifest, as its keys hash it."""
        return dict(self.target_inputs(label))["inputs"]

    def adopt_inputs(self, found: Iterable[tuple[Label, Manifest]], new_inputs: Mapping[str, Manifest]) -> None:
        """Take input manifests computed elsewhere (by a worker process)."""
        self._inputs.update(found)
        self.new_inputs.update(new_inputs)

    def context_of(self, label: Label) -> tuple[ContextEntry, ...]:
        """The entries an image target sends (walked again if its inputs came from a worker)."""
        if label not in self.entries or (label not in self.selections and self._is_precise(label)):
            target = self.graph.targets[label]
            assert isinstance(target, ImageTarget)
            self._image_inputs(target)
        return self.entries[label]

    def _is_precise(self, label: Label) -> bool:
        target = self.graph.targets[label]
        return isinstance(target, ImageTarget) and target.srcs is None

    def selection_of(self, label: Label) -> Selection | None:
        """An image target's precise inputs and why each is one; None with ``srcs`` or for a rootfs image."""
        target = self.graph.targets[label]
        if not isinstance(target, ImageTarget) or target.srcs is not None:
            return None
        self.context_of(label)
        return self.selections[label]

    def _compute_inputs(self, label: Label) -> Manifest:
        target = self.graph.targets[label]
        if isinstance(target, ImageTarget):
            return self._image_inputs(target)
        return self._rootfs_inputs(target)

    def _image_inputs(self, target: ImageTarget) -> Manifest:
        context_dir = self.root / target.context
        dockerfile = self.root / target.dockerfile
        started = now_ns()
        if target.srcs is None:
            walked = context_entries(context_dir, dockerfile, workspace_root=self.root, forced=False)
            selection = self._select(target, walked)
            self.selections[target.label] = selection
            entries = selection.entries
            mode = "whole" if selection.whole is not None else "precise"
        else:
            entries = declared_entries(context_dir, target.srcs, dockerfile, workspace_root=self.root)
            mode = "srcs"
        self.entries[target.label] = entries
        dockerfile_entry = StatEntry.of(DOCKERFILE, str(dockerfile), os.stat(dockerfile))
        tree: list[ContextEntry | StatEntry] = [*entries, dockerfile_entry]

        def summarize(hashes: Mapping[str, str]) -> str:
            return self._remember_inputs(inputs_manifest(hashes[DOCKERFILE], entries, hashes))

        digest = self.stat_cache.tree(
            names.tree(self.algorithm, mode, context_dir, dockerfile), tree, started, self._hash_entry, summarize
        )
        result: list[tuple[str, str]] = [
            ("dockerfile.name", os.path.basename(target.dockerfile)),
            ("target", target.target or ""),
            ("hermetic", "" if target.hermetic is None else str(target.hermetic).lower()),
            ("context.mode", mode),
        ]
        result += [(f"build_arg {k}", v) for k, v in target.build_args]
        # The ids of the build secrets and ssh agents a RUN can mount change what may be built: they
        # enter the key; where a value is, and the value, never do (absent when none, as before).
        if target.secrets:
            result.append(("secrets", ",".join(secret_id for secret_id, _ in target.secrets)))
        if target.ssh:
            result.append(("ssh", ",".join(target.ssh)))
        result.append(("inputs", digest))
        return tuple(result)

    def _select(self, target: ImageTarget, entries: tuple[ContextEntry, ...]) -> Selection:
        """The entries the target's Dockerfile reads, on any of its platforms (see selection.py)."""
        reads = target_reads(self.root, self.graph, target, bases_with_triggers=self.bases_with_triggers)
        return select_inputs(entries, reads, never=never_inputs(self.root, target))

    def _hash_entry(self, entry: ContextEntry | StatEntry) -> str:
        if isinstance(entry, StatEntry) or entry.kind is EntryKind.FILE:
            return self._hash_file(entry.abs_path)
        return ""

    def _remember_inputs(self, manifest: Manifest) -> str:
        """Digest of an input manifest, stored (once) so ``explain`` can list its entries."""
        digest = digest_manifest(manifest, self.algorithm)
        self.new_inputs[digest] = manifest
        return digest

    def _rootfs_inputs(self, target: RootfsTarget) -> Manifest:
        files = sorted({p for p in (target.tarball, target.script, *target.srcs) if p is not None})
        started = now_ns()
        stats = [StatEntry.of(rel, str(self.root / rel), os.lstat(self.root / rel)) for rel in files]

        def summarize(hashes: Mapping[str, str]) -> str:
            script = target.script
            manifest = rootfs_manifest(
                tarball=None if target.tarball is None else hashes[target.tarball],
                script=None if script is None else (hashes[script], os.access(self.root / script, os.X_OK)),
                srcs=[(rel, hashes[rel]) for rel in target.srcs],
            )
            return self._remember_inputs(manifest)

        digest = self.stat_cache.tree(
            names.tree(self.algorithm, "rootfs", self.root, target.label), stats, started, self._hash_entry, summarize
        )
        return (("inputs", digest),)
