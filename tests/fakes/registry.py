"""An in-memory registry for tests of the planner and the build: the RegistryClient protocol, no network.

The FakeExecutor pushes to and pulls from it (``FakeExecutor(registry=...)``). ``up=False`` makes
every call raise RegistryUnavailable; ``poison`` puts another image under a tag; ``indexes`` holds
what ``put_index`` was given; ``configs`` the image config a manifest's ``image_config`` answers
(by manifest digest; by default one made of the image's platform and labels).

    registry = FakeRegistry()
    fake = FakeExecutor(registry=registry)
"""

from __future__ import annotations

import hashlib
import threading
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.registry.client import (
    OCI_INDEX,
    ManifestInfo,
    RegistryError,
    RegistryUnavailable,
    RemoteImage,
    index_digest,
)

if TYPE_CHECKING:
    from orchestrator.registry.cache import RegistryClient

FAKE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class FakeRegistry:
    def __init__(self, address: str = "registry.test:5000", *, up: bool = True) -> None:
        self.address = address
        self.up = up
        self.manifests: dict[tuple[str, str], RemoteImage] = {}  # (repository, tag) -> image
        self.indexes: dict[tuple[str, str], tuple[RemoteImage, ...]] = {}
        self.closed = False  # close() was called (the fake goes on answering)
        self.created: dict[str, str] = {}  # manifest digest -> its image's creation time (ISO 8601)
        self.blobs: dict[str, tuple[tuple[str, int], ...]] = {}  # manifest digest -> (blob, size) it uses
        self.deleted: list[tuple[str, str]] = []  # (repository, digest) of every manifest deleted
        self.configs: dict[str, dict[str, Any]] = {}  # manifest digest -> its image config, when not the default
        self.by_digest: dict[tuple[str, str], RemoteImage] = {}  # (repository, digest) -> every manifest stored
        self._lock = threading.Lock()

    # --- the RegistryClient protocol -----------------------------------------------------------

    def reference(self, repository: str, tag: str) -> str:
        return f"{self.address}/{repository}:{tag}"

    def lookup(self, repository: str, tag: str) -> RemoteImage | None:
        self._check_up()
        with self._lock:
            return self.manifests.get((repository, tag))

    def lookup_many(
        self, wanted: Sequence[tuple[str, str]], *, workers: int = 8
    ) -> dict[tuple[str, str], RemoteImage | None]:
        return {item: self.lookup(*item) for item in wanted}

    def tag_manifest(self, repository: str, source: RemoteImage, tag: str) -> str:
        self._check_up()
        with self._lock:
            self.manifests[(repository, tag)] = source
            self.indexes.pop((repository, tag), None)
        return source.digest

    def put_index(self, repository: str, tag: str, images: Sequence[RemoteImage]) -> str:
        self._check_up()
        digest = index_digest(images)
        index = RemoteImage(
            repository=repository,
            tag=tag,
            digest=digest,
            media_type=OCI_INDEX,
            size=0,
            labels={},
            platform="",
        )
        with self._lock:
            self.indexes[(repository, tag)] = tuple(sorted(images, key=lambda i: i.platform))
            self.manifests[(repository, tag)] = index
        return digest

    def image_config(self, repository: str, reference: str) -> dict[str, Any] | None:
        """The image config of a single-image manifest (tag or digest); None for an index."""
        self._check_up()
        with self._lock:
            found = [
                image
                for (repo, tag), image in sorted(self.manifests.items())
                if repo == repository and reference in (tag, image.digest)
            ]
            if not found:
                raise RegistryError(f"{self.address}: reading the manifest {repository} {reference}: 404 not found")
            image = found[0]
            if image.media_type == OCI_INDEX:
                return None
            if image.digest in self.configs:
                return dict(self.configs[image.digest])
        os_, arch, *variant = image.platform.split("/")
        config: dict[str, Any] = {"os": os_, "architecture": arch, "config": {"Labels": dict(image.labels)}}
        if variant:
            config["variant"] = variant[0]
        return config

    def close(self) -> None:
        self.closed = True

    # --- what gc uses (orchestrator/pipeline/gc.py: CleanableRegistry) ---------------------------

    def tags(self, repository: str) -> tuple[str, ...]:
        self._check_up()
        with self._lock:
            return tuple(sorted(tag for repo, tag in self.manifests if repo == repository))

    def describe(self, repository: str, reference: str) -> ManifestInfo:
        self._check_up()
        with self._lock:
            found = [
                (tag, image)
                for (repo, tag), image in sorted(self.manifests.items())
                if repo == repository and reference in (tag, image.digest)
            ]
            if not found:
                raise KeyError(f"{repository}:{reference} is not in the fake registry")
            tag, image = found[0]
            children = tuple(i.digest for i in self.indexes.get((repository, tag), ()))
            return ManifestInfo(
                digest=image.digest,
                media_type=image.media_type,
                size=image.size,
                children=children,
                blobs=self.blobs.get(image.digest, ()),
                platform=image.platform,
                created=self.created.get(image.digest),
            )

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete by digest: every tag of ``repository`` pointing at ``digest`` goes, as in a real registry."""
        self._check_up()
        with self._lock:
            doomed = [key for key, image in self.manifests.items() if key[0] == repository and image.digest == digest]
            for key in doomed:
                del self.manifests[key]
                self.indexes.pop(key, None)
            self.by_digest.pop((repository, digest), None)
            if doomed:
                self.deleted.append((repository, digest))
            return bool(doomed)

    # --- what the FakeExecutor and tests use ---------------------------------------------------

    def store(self, reference: str, labels: Mapping[str, str], platform: str) -> RemoteImage:
        """Put an image under ``reference`` (``address/repository:tag``), as a push does."""
        self._check_up()
        repository, tag = self._split(reference)
        image = RemoteImage(
            repository=repository,
            tag=tag,
            digest=_digest(repository, platform, *sorted(f"{k}={v}" for k, v in labels.items())),
            media_type=FAKE_MANIFEST,
            size=0,
            labels=types.MappingProxyType(dict(labels)),
            platform=platform,
        )
        with self._lock:
            self.manifests[(repository, tag)] = image
            self.by_digest[(repository, image.digest)] = image
        return image

    def fetch(self, reference: str) -> RemoteImage | None:
        """The image under ``reference`` (``address/repository:tag`` or ``address/repository@digest``), as a
        pull finds it: a digest names a manifest until it is deleted, whatever its tags became."""
        self._check_up()
        with self._lock:
            if "@" in reference:
                repository, _, digest = reference.removeprefix(f"{self.address}/").partition("@")
                return self.by_digest.get((repository, digest))
            return self.manifests.get(self._split(reference))

    def poison(self, repository: str, tag: str, *, labels: Mapping[str, str], platform: str) -> None:
        """Overwrite a tag with another image (a writer that cannot be trusted)."""
        self.store(self.reference(repository, tag), labels, platform)

    def _split(self, reference: str) -> tuple[str, str]:
        prefix = f"{self.address}/"
        if not reference.startswith(prefix):
            raise ValueError(f"{reference} is not in the fake registry {self.address}")
        repository, _, tag = reference[len(prefix) :].rpartition(":")
        return repository, tag

    def _check_up(self) -> None:
        if not self.up:
            raise RegistryUnavailable(f"cannot reach the registry at {self.address}: the fake registry is down")


def _digest(*parts: str) -> str:
    return "sha256:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


if TYPE_CHECKING:
    from orchestrator.pipeline.gc import CleanableRegistry

    _conforms: RegistryClient = FakeRegistry()
    _cleanable: CleanableRegistry = FakeRegistry()
