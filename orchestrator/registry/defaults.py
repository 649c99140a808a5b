"""Where an unqualified reference (``debian:bookworm``) lives: Docker's default registry.

Its names come from the docker SDK (``docker.auth``) at run time rather than being written here,
and only when a reference names a registry host at all, so that the common case imports nothing.
"""

from __future__ import annotations

import functools
from urllib.parse import urlparse


@functools.cache
def default_registry_hosts() -> frozenset[str]:
    """The default registry's host names: its index name and the host of its index URL."""
    from docker.auth import INDEX_NAME, INDEX_URL

    return frozenset({INDEX_NAME, urlparse(INDEX_URL).hostname or INDEX_NAME})


def default_registry_name() -> str:
    from docker.auth import INDEX_NAME

    return str(INDEX_NAME)


def looks_like_host(component: str) -> bool:
    """Whether a reference's first path component is a registry host (Docker's rule)."""
    return "." in component or ":" in component or component == "localhost"
