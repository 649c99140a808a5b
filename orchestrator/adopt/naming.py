"""The names init writes: what a valid repository or tag is, and turning a path into a target name or repository."""

from __future__ import annotations

import re

from orchestrator.default_registry import looks_like_host
from orchestrator.label import valid_name

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::\d+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def valid_repository(text: str) -> bool:
    host, slash, rest = text.partition("/")
    if slash and looks_like_host(host):
        return bool(_HOST.fullmatch(host) and _REPOSITORY_PATH.fullmatch(rest))
    return bool(_REPOSITORY_PATH.fullmatch(text))


def valid_tag(text: str) -> bool:
    return _TAG.fullmatch(text) is not None


def target_name(text: str) -> str:
    """``text`` as a target name: lowercase, invalid characters replaced by ``-``."""
    name = re.sub(r"[^a-z0-9_.-]", "-", text.lower()).lstrip(".-")
    return name if valid_name(name) else "image"


def repository_component(text: str) -> str:
    """``text`` as one component of a repository path (``[a-z0-9]`` runs joined by ``.``, ``_``, ``-``)."""
    lowered = re.sub(r"[^a-z0-9._-]", "-", text.lower())
    joined = re.sub(r"[._-]{2,}", lambda m: m[0] if m[0] == "__" or set(m[0]) == {"-"} else "-", lowered)
    return joined.strip("._-") or "image"


def path_repository(package: str, name: str) -> str:
    """The repository a path gives: the package's directories, the last one replaced by ``name``."""
    parts = [repository_component(p) for p in package.split("/")[:-1]] if package else []
    if parts and looks_like_host(parts[0]):  # base.d/x must not read as the registry host base.d
        parts[0] = parts[0].replace(".", "-")
    return "/".join([*parts, repository_component(name)])
