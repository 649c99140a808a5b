"""Describing one node's build completely (a BuildRequest), without running anything.

The Dockerfile sent is a rebound copy: each internal FROM / COPY --from / RUN --mount from= is
replaced by the exact parent image built for the same key and platform, so a floating tag never
leaks into a build. The user's files are never modified.

The Dockerfile is read once, here, as bytes; the request carries a ``ContextCheck`` holding their
hash and the inputs digest the key was computed from, so whoever writes the context tar can prove
that the Dockerfile and every context file sent are what the key names (or fail with InputChanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import orchestrator.dockerfile as df
from orchestrator.core.model import ImageTarget, Node, RootfsTarget
from orchestrator.engine.api import KEY_LABEL, BuildRequest, ExtraFile, Secret
from orchestrator.errors import InputChanged
from orchestrator.graph.graph import NodeDeps
from orchestrator.keys.context import ContextEntry
from orchestrator.keys.digests import hash_bytes
from orchestrator.keys.inputs import ContextCheck, RootfsCheck
from orchestrator.workspace.lockfile import Pin
from orchestrator.workspace.provenance import BASE_DIGEST, BASE_NAME

ROOTFS_MEMBER = "rootfs.tar"
ROOTFS_DOCKERFILE = f"FROM scratch\nADD {ROOTFS_MEMBER} /\n"
# Where the rebound Dockerfile goes in the context tar, wherever the user's lies: the user's own stays
# at its path, unchanged, so ``COPY . .`` copies it as Docker would (engine/tarball.py hides ours).
SENT_DOCKERFILE = ".orchestrator.Dockerfile"


def log_path(cache_dir: Path, node: Node, key: str) -> str:
    safe = str(node.label).lstrip("/").replace("/", "_").replace(":", "__")
    return str(cache_dir / "logs" / safe / f"{node.platform.replace('/', '-')}-{key}.log")


def _final_base(info: df.DockerfileInfo) -> str:
    """The image the built stage finally rests on (through stage aliases)."""
    stage = info.stages[info.target_stage]
    while stage.base_stage is not None:
        stage = info.stages[stage.base_stage]
    return stage.base


def read_dockerfile(root: Path, target: ImageTarget) -> bytes:
    """The Dockerfile's bytes, read once for a build."""
    try:
        return (root / target.dockerfile).read_bytes()
    except OSError as exc:
        raise InputChanged(f"{target.label}: cannot read its Dockerfile {target.dockerfile}: {exc.strerror}") from exc


def image_request(
    *,
    target: ImageTarget,
    node: Node,
    key: str,
    image: str,
    deps: NodeDeps,
    parent_images: Mapping[Node, tuple[str, str]],  # parent node -> (content image, image id)
    entries: tuple[ContextEntry, ...],
    base_labels: Mapping[str, str],
    log: str,
    dockerfile: bytes,
    inputs_digest: str,
    algorithm: str,
    pins: Mapping[str, Pin] | None = None,
    network_mode: str | None = None,
    no_cache: bool = False,
    engine_timeout_s: float | None = None,
    secrets: tuple[Secret, ...] = (),
) -> BuildRequest:
    """The build of an image node from ``dockerfile`` (its bytes, read once) and ``entries``.

    ``inputs_digest`` and ``algorithm``: what the key hashed of the Dockerfile and the context, for
    the request's ContextCheck. ``pins``: external references images.lock pins for this platform;
    the build names the digests. ``no_cache``: without the engine's layer cache. ``secrets``: where
    the target's secret values are (never the values); its ssh ids come from ``target``.
    """
    text = df.decode(dockerfile, path=target.dockerfile)
    info = df.analyze_image(target, text, node.platform)
    _check_same_references(node, info, deps)
    replacements = {p.line: parent_images[p.node][0] for p in deps.parents}
    pins = pins or {}
    for ref in info.image_refs:
        if ref.line not in replacements and ref.reference in pins:
            replacements[ref.line] = pins[ref.reference].reference(ref.reference)
    rebound = df.rebind(text, replacements, path=target.dockerfile)
    labels = dict(base_labels)
    labels.update(dict(target.labels))
    base = _final_base(info)
    labels[BASE_NAME] = base
    if base in pins:
        labels[BASE_DIGEST] = pins[base].digest
    for parent in deps.parents:
        if parent.kind == "from" and parent.reference == base:
            labels[BASE_DIGEST] = parent_images[parent.node][1]
    labels[KEY_LABEL] = key
    check = ContextCheck(
        node=str(node),
        algorithm=algorithm,
        expected=inputs_digest,
        dockerfile_hash=hash_bytes(dockerfile, algorithm),
    )
    return BuildRequest(
        node=node,
        key=key,
        image=image,
        context=entries,
        context_check=check,
        dockerfile_path=SENT_DOCKERFILE,
        dockerfile_text=rebound,
        build_args=target.build_args,
        target=target.target,
        platform=node.platform,
        labels=tuple(sorted(labels.items())),
        network_mode=network_mode,
        # hermetic: never reuse a layer that a RUN with network made
        no_cache=no_cache or network_mode == "none",
        engine_timeout_s=engine_timeout_s,
        secrets=secrets,
        ssh=target.ssh,
        log_path=log,
    )


def _check_same_references(node: Node, info: df.DockerfileInfo, deps: NodeDeps) -> None:
    """The Dockerfile read now names its parents where the graph (from the Dockerfile loaded earlier) says."""
    found = {(ref.line, ref.reference) for ref in info.image_refs}
    for parent in deps.parents:
        if (parent.line, parent.reference) not in found:
            raise InputChanged(
                f"{node}: its Dockerfile changed since it was loaded (line {parent.line} no longer names "
                f"{parent.reference}); nothing was built or recorded: run the build again"
            )


def rootfs_request(
    *,
    target: RootfsTarget,
    node: Node,
    key: str,
    image: str,
    tarball: str,
    base_labels: Mapping[str, str],
    log: str,
    check: RootfsCheck | None = None,
    engine_timeout_s: float | None = None,
) -> BuildRequest:
    """The import of ``tarball``; ``check``: what it must hash to (a workspace file, not a script's output)."""
    labels = dict(base_labels)
    labels.update(dict(target.labels))
    labels[KEY_LABEL] = key
    return BuildRequest(
        node=node,
        key=key,
        image=image,
        context=(),
        context_check=check,
        extra_files=(ExtraFile(path=ROOTFS_MEMBER, source=tarball, hashed=check is not None),),
        dockerfile_path="Dockerfile",
        dockerfile_text=ROOTFS_DOCKERFILE,
        platform=node.platform,
        labels=tuple(sorted(labels.items())),
        engine_timeout_s=engine_timeout_s,
        log_path=log,
    )


def rootfs_check(
    *, root: Path, target: RootfsTarget, node: Node, inputs_digest: str, algorithm: str
) -> RootfsCheck | None:
    """The check of a ``tarball =`` rootfs image (a script's output is cached by key, not an input)."""
    if target.tarball is None:
        return None
    srcs = []
    for rel in target.srcs:
        try:
            srcs.append((rel, hash_bytes((root / rel).read_bytes(), algorithm)))
        except OSError as exc:
            raise InputChanged(f"{node}: cannot read its source {rel}: {exc.strerror}") from exc
    return RootfsCheck(
        node=str(node), algorithm=algorithm, expected=inputs_digest, member=ROOTFS_MEMBER, srcs=tuple(srcs)
    )
