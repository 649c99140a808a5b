"""What an image target's Dockerfile reads from its context, on every platform it is built for.

One place for the keys (``KeyComputer``, which selects the input entries) and for ``--since`` /
``query affected`` (``changes.py``, which asks whether a changed path is read). A base's ONBUILD
triggers read in the child's context: an internal base's from its Dockerfile, an external one
pinned in images.lock with triggers makes the whole context an input.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from orchestrator import dockerfile as df
from orchestrator.core.model import ImageTarget, Node
from orchestrator.graph.graph import TargetGraph
from orchestrator.keys.context import IGNORE_FILE, dockerignore_path, relative_to


def target_reads(
    root: Path, graph: TargetGraph, target: ImageTarget, *, bases_with_triggers: Collection[str]
) -> df.ContextReads:
    """The union of what ``target`` reads on each of its platforms (the same reads, mostly)."""
    text = df.read(root / target.dockerfile, path=target.dockerfile)
    reads: list[df.Read] = []
    whole: str | None = None
    nodes = graph.nodes_of(target.label)
    if "$" not in text:  # nothing to substitute: every platform reads the same
        nodes = nodes[:1]
    for node in nodes:
        found = df.context_reads(
            text,
            path=target.dockerfile,
            build_args=dict(target.build_args),
            target=target.target,
            platform=node.platform,
            base_triggers=_base_triggers(root, graph, node, bases_with_triggers),
        )
        reads += found.reads
        whole = whole or found.whole
    return df.ContextReads(reads=tuple(dict.fromkeys(reads)), whole=whole)


def never_inputs(root: Path, target: ImageTarget) -> frozenset[str]:
    """Context paths that are never inputs, whatever reads them: the ignore files (the engine gets the
    orchestrator's own) and the files of the target's build secrets (a secret is mounted, never sent)."""
    context_dir = root / target.context
    never = {IGNORE_FILE}
    ignore_file = dockerignore_path(context_dir, root / target.dockerfile)
    secret_files = [root / source.removeprefix("file:") for _, source in target.secrets if source.startswith("file:")]
    for path in (ignore_file, *secret_files):
        if path is not None and (rel := relative_to(path, context_dir.resolve())) is not None:
            never.add(rel)
    return frozenset(never)


def _base_triggers(
    root: Path, graph: TargetGraph, node: Node, bases_with_triggers: Collection[str]
) -> Callable[[str], df.ContextReads | None]:
    """What the ONBUILD triggers of each base of ``node`` read (by the reference its FROM gives)."""
    parents = {p.reference: p.node.label for p in graph.node_deps[node].parents if p.kind == "from"}

    def triggers(reference: str) -> df.ContextReads | None:
        label = parents.get(reference)
        if label is None:
            if reference in bases_with_triggers:
                return df.ContextReads(reads=(), whole=f"the base {reference} has ONBUILD triggers (images.lock)")
            return None  # an unpinned external base is taken to have none (lint warns when it has)
        base = graph.targets[label]
        if not isinstance(base, ImageTarget):
            return None  # a rootfs image has no ONBUILD
        text = df.read(root / base.dockerfile, path=base.dockerfile)
        found = df.onbuild_reads(text, path=base.dockerfile, target=base.target)
        for_child = tuple(replace(read, why=f"{read.why} (ONBUILD trigger of {label})") for read in found.reads)
        return df.ContextReads(reads=for_child, whole=found.whole)

    return triggers
