"""Small OCI values for the registry tests: digests, media types, a RemoteImage."""

from __future__ import annotations

import hashlib

from orchestrator.registry.client import DOCKER_MANIFEST, RemoteImage

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(platform: str, *, repository: str = "cache/app", digest: str | None = None, size: int = 100) -> RemoteImage:
    """A single-platform image with a made-up digest (the platform's, unless given)."""
    return RemoteImage(
        repository=repository,
        tag=None,
        digest=digest or sha256(platform.encode()),
        media_type=DOCKER_MANIFEST,
        size=size,
        labels={},
        platform=platform,
    )
