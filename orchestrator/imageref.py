"""Image references (``repo[:tag][@digest]``) split the way Docker does.

The repository keeps any registry prefix (``localhost:5000/team/app``); a reference without a tag
or digest means ``:latest``. ``familiar`` drops Docker Hub's implicit ``docker.io/library/`` so
``debian:bookworm`` and ``docker.io/library/debian:bookworm`` compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        repo = self.repository
        for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
            if repo.startswith(prefix):
                repo = repo[len(prefix) :]
                break
        return ImageReference(repo, self.tag, self.digest)

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
