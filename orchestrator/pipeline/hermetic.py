"""Hermetic builds, and the checks that a build can use what images.lock pins.

A hermetic target (``hermetic = True`` on it, or in WORKSPACE) builds only from what is declared
and pinned:

- its RUN steps have no network (the build runs with ``network=none``);
- its context is exactly its declared ``srcs`` (no directory walk, no ignore file);
- every external base it uses is pinned in images.lock, and the build names the pinned digest;
- its needed stages use no ``RUN --mount=type=cache`` (a cache mount carries state from one build
  to the next);
- build arguments come only from its BUILD file (the orchestrator never reads them from the
  environment) and no proxy settings are injected from the Docker client's configuration (the
  orchestrator posts builds itself; the CLI's proxy injection never happens).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from orchestrator.core.imageref import ImageReference
from orchestrator.core.model import ImageTarget, Node, Target, WorkspaceSettings
from orchestrator.core.platforms import normalize
from orchestrator.engine.api import Executor
from orchestrator.errors import OrchestratorError
from orchestrator.graph.graph import TargetGraph
from orchestrator.registry.pins import Presence, Resolver
from orchestrator.workspace.lockfile import LOCK_FILE, Lock, Pin


class HermeticError(OrchestratorError):
    """A hermetic target that depends on something undeclared or unpinned (exit 2)."""


class PinnedImageMissing(OrchestratorError):
    """images.lock pins an image the engine no longer has (exit 2)."""


class BaseWrongPlatform(OrchestratorError):
    """An unpinned external base the engine holds only for another platform (exit 2)."""


class BaseNotFound(OrchestratorError):
    """An unpinned external base neither the engine nor the registry its reference names has (exit 2)."""


def is_hermetic(target: Target, settings: WorkspaceSettings) -> bool:
    if not isinstance(target, ImageTarget):
        return False
    return target.hermetic if target.hermetic is not None else settings.hermetic


def pins_of(graph: TargetGraph, lock: Lock | None, node: Node) -> dict[str, Pin]:
    """The node's external bases that images.lock pins for its platform: reference -> pin."""
    if lock is None:
        return {}
    found = {}
    for reference in graph.node_deps[node].externals:
        pin = lock.pin(reference, node.platform)
        if pin is not None:
            found[reference] = pin
    return found


def _hermetic_images(
    graph: TargetGraph, settings: WorkspaceSettings, nodes: Iterable[Node]
) -> Iterator[tuple[Node, ImageTarget]]:
    """The hermetic image nodes among ``nodes``, in order, with their targets."""
    for node in sorted(nodes):
        target = graph.targets[node.label]
        if isinstance(target, ImageTarget) and is_hermetic(target, settings):
            yield node, target


def check_hermetic(graph: TargetGraph, settings: WorkspaceSettings, lock: Lock | None, nodes: Iterable[Node]) -> None:
    """Raise HermeticError listing every hermetic node that is not declared and pinned."""
    problems = []
    for node, target in _hermetic_images(graph, settings, nodes):
        if target.srcs is None:
            problems.append(f"{node.label}: a hermetic image must declare its context files in srcs = [...]")
        unpinned = [r for r in graph.node_deps[node].externals if lock is None or lock.pin(r, node.platform) is None]
        if unpinned:
            shown = ", ".join(unpinned)
            problems.append(f"{node}: the hermetic image uses {shown}, which {LOCK_FILE} does not pin")
    if problems:
        fix = f"declare srcs, and run orchestrator lock to pin bases in {LOCK_FILE}"
        raise HermeticError("not hermetic: " + "; ".join(dict.fromkeys(problems)) + f" ({fix})")


def check_hermetic_mounts(graph: TargetGraph, settings: WorkspaceSettings, root: Path, nodes: Iterable[Node]) -> None:
    """Raise HermeticError naming every hermetic node whose needed stages use a cache mount."""
    import orchestrator.dockerfile as df  # here, not at the top: a restored load never parses a Dockerfile

    problems = []
    for node, target in _hermetic_images(graph, settings, nodes):
        try:
            text = df.read(root / target.dockerfile, path=target.dockerfile)
        except OSError:
            continue  # the build says it cannot read the Dockerfile
        mounts = df.run_mounts(
            text,
            path=target.dockerfile,
            build_args=dict(target.build_args),
            target=target.target,
            platform=node.platform,
        )
        lines = sorted({mount.line for mount in mounts if mount.type == "cache"})
        if lines:
            where = ", ".join(f"{target.dockerfile}:{line}" for line in lines)
            problems.append(f"{target.label} uses RUN --mount=type=cache ({where})")
    if problems:
        raise HermeticError(
            "not hermetic: " + "; ".join(dict.fromkeys(problems)) + " (a cache mount carries state from one "
            "build to the next, so the image would depend on more than its inputs: remove the cache mount, "
            "or set hermetic = False on the target)"
        )


def check_pinned_images(graph: TargetGraph, lock: Lock | None, nodes: Iterable[Node], executor: Executor) -> None:
    """Every engine-sourced pin the nodes build on is still in the engine (else the lock is stale)."""
    missing: dict[tuple[str, str], Pin] = {}
    checked: set[str] = set()
    for node in nodes:
        for reference, pin in pins_of(graph, lock, node).items():
            if pin.source != "engine" or pin.digest in checked:
                continue
            checked.add(pin.digest)
            if executor.inspect(pin.digest) is None:
                missing[(reference, node.platform)] = pin
    if missing:
        shown = "; ".join(f"{ref} ({platform}) to {pin.digest}" for (ref, platform), pin in sorted(missing.items()))
        refs = " ".join(sorted({ref for ref, _ in missing}))
        raise PinnedImageMissing(
            f"{LOCK_FILE} pins {shown}, which the engine no longer has; import that image again, "
            f"or pin what the engine has now: orchestrator lock --update {refs}"
        )


def check_base_platforms(
    graph: TargetGraph, lock: Lock | None, nodes: Iterable[Node], executor: Executor, root: Path
) -> set[str]:
    """Every unpinned external base the nodes build on, when the engine has it, is for their platform.

    Builds never pull (``pull=0``), and an engine holds one image per name: a base imported or
    pulled for linux/amd64 cannot serve a linux/arm64 build. ``orchestrator lock`` says so when
    pinning; this says it at planning, before anything is built. Each reference is inspected once.

    Returns the unpinned bases the engine lacks, for :func:`check_bases_found`.
    """
    problems: dict[tuple[str, str], tuple[str, list[Node]]] = {}
    found: dict[str, str | None] = {}  # reference -> the engine's platform for it (None: not there)
    for node in sorted(nodes):
        for reference in graph.node_deps[node].externals:
            if ImageReference.parse(reference).digest is not None:
                continue  # the digest names one platform's image; the build says if it is wrong
            if lock is not None and lock.pin(reference, node.platform) is not None:
                continue  # a pin is for this platform (check_pinned_images checks it is still there)
            if reference not in found:
                info = executor.inspect(reference)
                found[reference] = None if info is None else info.platform
            have = found[reference]
            if have is None or normalize(have) == normalize(node.platform):
                continue
            if normalize(have) in _from_platforms(graph, node, reference, root):
                continue  # FROM --platform=<the engine's platform> <reference>: the build uses that one
            problems.setdefault((reference, node.platform), (have, []))[1].append(node)
    absent = {reference for reference, have in found.items() if have is None}
    if problems:
        shown = "; ".join(
            f"{ref} for {platform} (used by {', '.join(str(n.label) for n in users)}): "
            f"the engine's {ref} is for {have}, not {platform}"
            for (ref, platform), (have, users) in sorted(problems.items())
        )
        raise BaseWrongPlatform(
            f"cannot build on {shown}. The engine holds one image per name and builds never pull: "
            "produce the base with a target of this workspace (rootfs_image() or image()) for every "
            "platform, pull it for that platform under another name, or build only the platform the "
            "engine has (--platform)"
        )
    return absent


def check_bases_found(
    graph: TargetGraph, lock: Lock | None, nodes: Iterable[Node], absent: Collection[str], resolver: Resolver
) -> None:
    """Every unpinned external base of the nodes that the engine lacks is in the registry it names.

    ``absent``: the references :func:`check_base_platforms` found missing from the engine; only
    those are looked for again (:meth:`Resolver.exists`, once per reference). A base found nowhere (a
    typo, or an image never pulled: builds never pull unpinned bases, and Docker's default registry
    is not asked) fails the build before anything is built, naming the base and its users. A base
    whose registry cannot be reached is left to the build (the engine's pull names the problem).
    """
    problems: dict[str, tuple[str, list[Node]]] = {}
    for node in sorted(nodes):
        for reference in graph.node_deps[node].externals:
            if reference not in absent:
                continue
            if lock is not None and lock.pin(reference, node.platform) is not None:
                continue  # pinned for this platform: check_pinned_images checks it
            check = resolver.exists(reference)
            if check.presence is Presence.missing:
                problems.setdefault(reference, (check.why, []))[1].append(node)
    if problems:
        shown = "; ".join(f"{ref} (used by {_users(users)}): {why}" for ref, (why, users) in sorted(problems.items()))
        raise BaseNotFound(
            f"cannot find the base image {shown}. Nothing was built: fix the reference if it is a typo, "
            "or pull or load the image into the engine (docker pull / docker load; then orchestrator lock "
            f"can pin it in {LOCK_FILE}), or name a registry that has it"
        )


def _users(nodes: Iterable[Node]) -> str:
    return ", ".join(sorted({str(node.label) for node in nodes}))


def _from_platforms(graph: TargetGraph, node: Node, reference: str, root: Path) -> set[str]:
    """The platforms a ``FROM --platform=... <reference>`` of the node's Dockerfile names (rarely any).

    Read again only for a base already found on the wrong platform: the graph keeps references only.
    """
    import orchestrator.dockerfile as df  # here, not at the top: a restored load never parses a Dockerfile

    target = graph.targets[node.label]
    if not isinstance(target, ImageTarget):
        return set()
    info = df.analyze_image(target, df.read(root / target.dockerfile, path=target.dockerfile), node.platform)
    return {normalize(ref.platform) for ref in info.image_refs if ref.reference == reference and ref.platform}
