"""Image references (``repo[:tag][@digest]``) split the way Docker does.

The repository keeps any registry prefix (``localhost:5000/team/app``); a reference without a tag
or digest means ``:latest``. ``familiar`` drops the default registry's host and its implicit
``library/`` namespace, so ``debian:bookworm`` and its fully qualified form compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.default_registry import default_registry_hosts, looks_like_host


@dataclass(frozen=True, slots=True)
class ImageReference:
    repository: str
    tag: str | None
    digest: str | None = None

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def familiar(self) -> ImageReference:
        host, slash, rest = self.repository.partition("/")
        if not slash or not looks_like_host(host) or host not in default_registry_hosts():
            return self
        return ImageReference(rest.removeprefix("library/"), self.tag, self.digest)

    @staticmethod
    def parse(text: str) -> ImageReference:
        """Split ``text``; a missing tag (and no digest) becomes ``latest``."""
        name, _, digest = text.partition("@")
        last_slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > last_slash:
            repository, tag = name[:colon], name[colon + 1 :]
        else:
            repository, tag = name, None
        if tag is None and not digest:
            tag = "latest"
        return ImageReference(repository, tag or None, digest or None)
