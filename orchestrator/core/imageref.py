"""Image references (``repo[:tag][@digest]``) split the way Docker does.

The repository keeps any registry prefix (``localhost:5000/team/app``); a reference without a tag
or digest means ``:latest``. ``familiar`` drops the default registry's host and its implicit
``library/`` namespace, so ``debian:bookworm`` and its fully qualified form compare equal.

:func:`repository_problem` and :func:`valid_tag` check names against Docker's reference grammar
(``distribution/reference``): a repository is ``[host[:port]/]path``, its path lowercase components
``[a-z0-9]+`` joined by ``.``, ``_``, ``__`` or ``-`` runs and separated by ``/``, at most 255
characters in all; a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.registry.defaults import default_registry_hosts, looks_like_host

__all__ = ["ImageReference", "repository_problem", "valid_repository", "valid_tag"]

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_PATH = re.compile(rf"{_COMPONENT.pattern}(?:/{_COMPONENT.pattern})*")
_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[A-Fa-f0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")
_NAME_MAX = 255
_PATH_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789._-"


def repository_problem(text: str) -> str | None:
    """Why Docker would refuse ``text`` as a repository, or None when it is one."""
    if not text:
        return "it is empty"
    if len(text) > _NAME_MAX:
        return f"it is {len(text)} characters long, more than {_NAME_MAX}"
    if "@" in text:
        return "it holds a digest ('@...')"
    host, slash, path = text.partition("/")
    if not (slash and looks_like_host(host)):
        path = text
    elif not _HOST.fullmatch(host):
        return f"{host!r} is not a registry host[:port]"
    if _PATH.fullmatch(path):
        return "it is 64 hex digits, which Docker reads as an image ID" if _IMAGE_ID.fullmatch(text) else None
    name, colon, tag = path.rpartition(":")
    if colon and _PATH.fullmatch(name):
        return f"it holds a tag (':{tag}'), which belongs in tags"
    if _PATH.fullmatch(path.lower()):
        return "it has uppercase letters"
    bad = next(c for c in path.split("/") if not _COMPONENT.fullmatch(c))
    if not bad:
        return "it has an empty path component (a '/' at an end, or '//')"
    if others := sorted(set(bad) - set(_PATH_CHARACTERS)):
        return f"{bad!r} has {', '.join(map(repr, others))}"
    return f"{bad!r} starts or ends with a separator, or joins with one other than '.', '_', '__' or '-'s"


def valid_repository(text: str) -> bool:
    return repository_problem(text) is None


def valid_tag(text: str) -> bool:
    return _TAG.fullmatch(text) is not None


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
