"""The names init writes: a path turned into a target name or repository (valid ones: see imageref)."""

from __future__ import annotations

import re

from orchestrator.core.imageref import valid_repository, valid_tag
from orchestrator.core.label import valid_name
from orchestrator.registry.defaults import looks_like_host

__all__ = ["path_repository", "repository_component", "target_name", "valid_repository", "valid_tag"]


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
