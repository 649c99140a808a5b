"""Describing one node's build completely (a BuildRequest), without running anything.

The Dockerfile sent is a rebound copy: each internal FROM / COPY --from / RUN --mount from= is
replaced by the exact parent image built for the same key and platform, so a floating tag never
leaks into a build. The user's files are never modified.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import orchestrator.dockerfile as df
from orchestrator.context import ContextEntry
from orchestrator.executor.api import KEY_LABEL, BuildRequest, ExtraFile
from orchestrator.graph import NodeDeps
from orchestrator.lockfile import Pin
from orchestrator.model import ImageTarget, Node, RootfsTarget
from orchestrator.provenance import BASE_DIGEST, BASE_NAME

ROOTFS_DOCKERFILE = "FROM scratch\nADD rootfs.tar /\n"
OUTSIDE_DOCKERFILE = ".orchestrator/Dockerfile"  # where a Dockerfile from outside the context goes


def log_path(cache_dir: Path, node: Node, key: str) -> str:
    safe = str(node.label).lstrip("/").replace("/", "_").replace(":", "__")
    return str(cache_dir / "logs" / safe / f"{node.platform.replace('/', '-')}-{key}.log")


def _final_base(info: df.DockerfileInfo) -> str:
    """The image the built stage finally rests on (through stage aliases)."""
    stage = info.stages[info.target_stage]
    while stage.base_stage is not None:
        stage = info.stages[stage.base_stage]
    return stage.base


def image_request(
    *,
    root: Path,
    target: ImageTarget,
    node: Node,
    key: str,
    image: str,
    deps: NodeDeps,
    parent_images: Mapping[Node, tuple[str, str]],  # parent node -> (content image, image id)
    entries: tuple[ContextEntry, ...],
    base_labels: Mapping[str, str],
    log: str,
    pins: Mapping[str, Pin] | None = None,
    network_mode: str | None = None,
) -> BuildRequest:
    """``pins``: external references images.lock pins for this platform; the build names the digests."""
    text = (root / target.dockerfile).read_text()
    info = df.analyze_image(target, text, node.platform)
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
    dockerfile_rel = os.path.relpath(root / target.dockerfile, root / target.context)
    inside = not dockerfile_rel.startswith("..")
    return BuildRequest(
        node=node,
        key=key,
        image=image,
        context=entries,
        dockerfile_path=Path(dockerfile_rel).as_posix() if inside else OUTSIDE_DOCKERFILE,
        dockerfile_text=rebound,
        build_args=target.build_args,
        target=target.target,
        platform=node.platform,
        labels=tuple(sorted(labels.items())),
        network_mode=network_mode,
        no_cache=network_mode == "none",  # hermetic: never reuse a layer that a RUN with network made
        log_path=log,
    )


def rootfs_request(
    *, target: RootfsTarget, node: Node, key: str, image: str, tarball: str, base_labels: Mapping[str, str], log: str
) -> BuildRequest:
    labels = dict(base_labels)
    labels.update(dict(target.labels))
    labels[KEY_LABEL] = key
    return BuildRequest(
        node=node,
        key=key,
        image=image,
        context=(),
        extra_files=(ExtraFile(path="rootfs.tar", source=tarball),),
        dockerfile_path="Dockerfile",
        dockerfile_text=ROOTFS_DOCKERFILE,
        platform=node.platform,
        labels=tuple(sorted(labels.items())),
        log_path=log,
    )
