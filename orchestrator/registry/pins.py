"""Pinning external bases: resolving them to digests, checking a lock, finding what moved.

A reference is resolved for one platform, in this order:

1. a reference that already carries a digest (``debian@sha256:...``) is its own pin;
2. a reference that names a registry host (``registry.example.com:5000/team/base:1``) is asked of
   that registry: the platform's manifest digest (from the index when the tag is multi-platform);
3. otherwise, or when the registry cannot answer, the local engine: the image ID of the image with
   that name, if its platform is the one wanted (bases imported here, ``docker import``/``load``).

An unqualified reference (``alpine:3.19``) lives in Docker's default registry, which the
orchestrator does not ask: pull it first (then the engine has it) or name a registry.

Each pin also records whether the image has ONBUILD triggers (``Pin.onbuild``): from the image
config the pin's digest names, the registry's config blob of the platform's manifest or the
engine's inspect (``Config.OnBuild``). For a reference that carries its digest, whichever of the
two answers for that digest (the registry first); when neither can, no triggers are recorded.

``Resolver.exists`` answers a weaker question for ``lint`` (ORC005): is an unpinned base anywhere
a build could use it from, the engine (any platform), or the registry its reference names?
``Resolver.engine_triggers`` another (ORC006): does the engine's image of that name have ONBUILD
triggers?
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.imageref import ImageReference
from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.core.platforms import normalize
from orchestrator.engine.api import Executor, ImageInfo
from orchestrator.errors import OrchestratorError
from orchestrator.graph.graph import TargetGraph
from orchestrator.registry.client import INDEX_TYPES, Registry, RegistryError, RegistryUnavailable
from orchestrator.registry.defaults import default_registry_hosts, looks_like_host
from orchestrator.workspace.lockfile import LOCK_FILE, Lock, Pin


class LockError(OrchestratorError):
    """A base that cannot be pinned, or a lock that does not fit the workspace (exit 2)."""


def bases_in_use(graph: TargetGraph, nodes: Iterable[Node] | None = None) -> dict[tuple[str, str], list[Node]]:
    """(external reference, platform) -> the nodes that use it, for ``nodes`` (default: all)."""
    used: dict[tuple[str, str], list[Node]] = {}
    for node in sorted(graph.node_deps if nodes is None else nodes):
        for reference in graph.node_deps[node].externals:
            used.setdefault((reference, node.platform), []).append(node)
    return used


class Presence(enum.Enum):
    found = "found"
    missing = "missing"  # neither the engine nor a registry that answered has it
    unknown = "unknown"  # the registry it names could not be asked (or no engine to ask)


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseCheck:
    presence: Presence
    why: str  # where it was looked for, for messages ("" when found)


class Resolver:
    """Resolves references to pins through registries (one client per host) and the local engine."""

    def __init__(self, executor: Executor | None, registry_factory: Callable[[str], Registry] = Registry) -> None:
        self.executor = executor
        self.registry_factory = registry_factory
        self._registries: dict[str, Registry] = {}
        self._checked: dict[str, BaseCheck] = {}
        self._inspected: dict[str, ImageInfo | None] = {}

    def exists(self, reference: str) -> BaseCheck:
        """Whether the engine (for any platform) or the registry ``reference`` names has it; asked once."""
        if reference not in self._checked:
            self._checked[reference] = self._exists(reference)
        return self._checked[reference]

    def _exists(self, reference: str) -> BaseCheck:
        parsed = ImageReference.parse(reference)
        if parsed.digest is not None:
            return BaseCheck(presence=Presence.found, why="")
        if self._engine_image(reference) is not None:
            return BaseCheck(presence=Presence.found, why="")
        engine = "the engine does not have it" if self.executor is not None else "no Docker engine to ask"
        host = _registry_host(parsed)
        if host is None:
            if self.executor is None:
                return BaseCheck(presence=Presence.unknown, why=engine)
            why = f"{engine} (Docker's default registry is not asked: pull it, or name a registry)"
            return BaseCheck(presence=Presence.missing, why=why)
        registry = self._registries.setdefault(host, self.registry_factory(host))
        path = parsed.repository.partition("/")[2]
        try:
            image = registry.lookup(path, parsed.tag or "latest")
        except (RegistryUnavailable, RegistryError) as exc:
            return BaseCheck(presence=Presence.unknown, why=f"{engine}, and {exc}")
        if image is not None:
            return BaseCheck(presence=Presence.found, why="")
        return BaseCheck(presence=Presence.missing, why=f"{engine}, and the registry {host} has no {path}:{parsed.tag}")

    def engine_triggers(self, reference: str) -> bool:
        """Whether the engine holds an image named ``reference`` (any platform) with ONBUILD triggers."""
        info = self._engine_image(reference)
        return info is not None and info.onbuild

    def _engine_image(self, reference: str) -> ImageInfo | None:
        """The engine's image named ``reference``, inspected once (None without one, or without an engine)."""
        if self.executor is None:
            return None
        if reference not in self._inspected:
            self._inspected[reference] = self.executor.inspect(reference)
        return self._inspected[reference]

    def resolve(self, reference: str, platform: str) -> Pin:
        parsed = ImageReference.parse(reference)
        if parsed.digest is not None:
            onbuild = self._digest_triggers(reference, parsed, platform)
            return Pin(digest=parsed.digest, source="reference", onbuild=onbuild)
        reasons = []
        host = _registry_host(parsed)
        if host is not None:
            try:
                found = self._from_registry(host, parsed, platform)
            except (RegistryUnavailable, RegistryError) as exc:
                found, why = None, str(exc)
            else:
                why = f"the registry {host} has no {parsed.repository.partition('/')[2]}:{parsed.tag}"
            if found is not None:
                return found
            reasons.append(why)
        pin, why = self._from_engine(reference, platform)
        if pin is not None:
            return pin
        reasons.append(why)
        raise LockError(f"cannot pin {reference} for {platform}: {'; '.join(reasons)}")

    def close(self) -> None:
        for registry in self._registries.values():
            registry.close()

    def _from_registry(self, host: str, parsed: ImageReference, platform: str) -> Pin | None:
        registry = self._registries.setdefault(host, self.registry_factory(host))
        tag = parsed.tag or "latest"
        path = parsed.repository.partition("/")[2]  # the repository inside the registry, as ``exists`` asks
        image = registry.lookup(path, tag)
        if image is None:
            return None
        if image.media_type not in INDEX_TYPES:
            if normalize(image.platform) != normalize(platform):
                raise RegistryError(f"{parsed} in {host} is for {image.platform}, not {platform}")
            digest = image.digest
        else:
            _, body, _ = registry.manifest_bytes(path, image.digest)
            digest = _platform_entry(body, platform) or ""
            if not digest:
                raise RegistryError(f"{parsed} in {host} has no image for {platform}")
        onbuild = _has_triggers(registry.image_config(path, digest))
        return Pin(digest=digest, source="registry", onbuild=onbuild)

    def _digest_triggers(self, reference: str, parsed: ImageReference, platform: str) -> bool:
        """Whether the image a digest names (for ``platform``) has ONBUILD triggers; False when nobody can tell.

        Asked of the registry the reference names, then of the engine; neither is required to answer.
        """
        assert parsed.digest is not None
        host = _registry_host(parsed)
        if host is not None:
            registry = self._registries.setdefault(host, self.registry_factory(host))
            path = parsed.repository.partition("/")[2]
            try:
                media_type, body, _ = registry.manifest_bytes(path, parsed.digest)
                digest = _platform_entry(body, platform) if media_type in INDEX_TYPES else parsed.digest
                if digest is not None:
                    return _has_triggers(registry.image_config(path, digest))
            except (RegistryUnavailable, RegistryError, ValueError):
                pass  # the engine may know
        info = self._engine_image(reference)
        if info is not None and normalize(info.platform) == normalize(platform):
            return info.onbuild
        return False

    def _from_engine(self, reference: str, platform: str) -> tuple[Pin | None, str]:
        if self.executor is None:
            return None, "no Docker engine to ask"
        info = self.executor.inspect(reference)
        if info is None:
            return None, f"the engine has no image {reference} (pull or import it first)"
        if normalize(info.platform) != normalize(platform):
            return None, f"the engine's {reference} is for {info.platform}, not {platform}"
        return Pin(digest=info.image_id, source="engine", onbuild=info.onbuild), ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LockChange:
    reference: str
    platform: str
    old: str | None  # None: newly pinned
    new: str | None  # None: dropped (no target uses it any more)
    onbuild: bool = False  # the new pin has ONBUILD triggers
    old_onbuild: bool = False  # the old pin had them


def updated_lock(
    graph: TargetGraph, lock: Lock | None, resolver: Resolver, *, update: Iterable[str] | None = None
) -> tuple[Lock, list[LockChange]]:
    """The lock the workspace needs: every base in use pinned, nothing else.

    Pins already in ``lock`` are kept, except for the references in ``update`` (every reference when
    ``update`` is empty; none when it is None), which are resolved again.
    """
    wanted = set(update) if update is not None else set()
    refresh_all = update is not None and not wanted
    in_use = bases_in_use(graph)
    unknown = sorted(wanted - {reference for reference, _ in in_use})
    if unknown:
        raise LockError(f"no target uses {', '.join(unknown)}; bases in use: {_listing(in_use)}")
    bases: dict[str, dict[str, Pin]] = {}
    changes = []
    for reference, platform in sorted(in_use):
        old = lock.pin(reference, platform) if lock is not None else None
        pin = old
        if pin is None or refresh_all or reference in wanted:
            pin = resolver.resolve(reference, platform)
        if old is None or (old.digest, old.onbuild) != (pin.digest, pin.onbuild):
            changes.append(
                LockChange(
                    reference=reference,
                    platform=platform,
                    old=None if old is None else old.digest,
                    new=pin.digest,
                    onbuild=pin.onbuild,
                    old_onbuild=old is not None and old.onbuild,
                )
            )
        bases.setdefault(reference, {})[platform] = pin
    for reference, platform, pin in lock.pins() if lock is not None else ():
        if (reference, platform) not in in_use:
            changes.append(
                LockChange(reference=reference, platform=platform, old=pin.digest, new=None, old_onbuild=pin.onbuild)
            )
    return Lock(bases), changes


def check_locked(graph: TargetGraph, lock: Lock | None, nodes: Iterable[Node]) -> None:
    """``build --locked``: every base the nodes use is pinned, and the lock pins nothing unused."""
    needed = bases_in_use(graph, nodes)
    missing = [
        (ref, platform, users) for (ref, platform), users in sorted(needed.items()) if _pin(lock, ref, platform) is None
    ]
    if missing:
        shown = "; ".join(f"{ref} for {platform} (used by {_labels(users)})" for ref, platform, users in missing)
        raise LockError(f"--locked: {LOCK_FILE} does not pin {shown}; run: orchestrator lock")
    in_use = bases_in_use(graph)
    stale = [(ref, platform) for ref, platform, _ in (lock.pins() if lock else ()) if (ref, platform) not in in_use]
    if stale:
        shown = ", ".join(f"{ref} for {platform}" for ref, platform in stale)
        message = f"--locked: {LOCK_FILE} is stale: it pins {shown}, which no target uses; run: orchestrator lock"
        raise LockError(message)


def _pin(lock: Lock | None, reference: str, platform: str) -> Pin | None:
    return None if lock is None else lock.pin(reference, platform)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outdated:
    reference: str
    platform: str
    locked: str
    current: str | None  # None: could not be resolved now (``error`` says why)
    error: str | None
    targets: tuple[Label, ...]  # every target that would rebuild: the users and their dependents


def outdated_bases(graph: TargetGraph, lock: Lock, resolver: Resolver) -> list[Outdated]:
    """Locked bases whose digest moved (or cannot be resolved any more), with what they would rebuild."""
    in_use = bases_in_use(graph)
    found = []
    for reference, platform, pin in lock.pins():
        if pin.source == "reference" or (reference, platform) not in in_use:
            continue
        try:
            current, error = resolver.resolve(reference, platform).digest, None
        except LockError as exc:
            current, error = None, str(exc)
        if current == pin.digest:
            continue
        users = {n.label for n in in_use[(reference, platform)]}
        affected = users | graph.labels.reachable(users, upward=False)
        found.append(
            Outdated(
                reference=reference,
                platform=platform,
                locked=pin.digest,
                current=current,
                error=error,
                targets=tuple(sorted(affected)),
            )
        )
    return found


def _platform_entry(index: bytes, platform: str) -> str | None:
    """The digest of the manifest for ``platform`` in an index (its JSON), or None."""
    for entry in json.loads(index).get("manifests", []):
        wanted = entry.get("platform") or {}
        found = "/".join(p for p in (wanted.get("os"), wanted.get("architecture"), wanted.get("variant")) if p)
        if found and normalize(found) == normalize(platform):
            return str(entry["digest"])
    return None


def _has_triggers(config: Mapping[str, Any] | None) -> bool:
    """Whether an image config (its JSON) has ONBUILD triggers: a non-empty ``config.OnBuild``."""
    inner = (config or {}).get("config")
    return isinstance(inner, dict) and bool(inner.get("OnBuild"))


def _registry_host(parsed: ImageReference) -> str | None:
    """The registry a reference names, when it is not Docker's default one (which is never asked)."""
    host = parsed.repository.partition("/")[0]
    if "/" in parsed.repository and looks_like_host(host) and host not in default_registry_hosts():
        return host
    return None


def _labels(nodes: Iterable[Node]) -> str:
    return ", ".join(sorted({str(n.label) for n in nodes}))


def _listing(in_use: Mapping[tuple[str, str], list[Node]]) -> str:
    return ", ".join(sorted({reference for reference, _ in in_use})) or "none"
