"""The engines a build may run on: ``workspace(engines = [...])`` and ``--engine URL``, as values.

An ``EngineSpec`` says where a Docker Engine answers (``unix://``, ``tcp://``, ``ssh://``), how many
builds it takes at once (the default of ``--jobs``), its native platforms (default: asked from the
engine) and, for ``tcp://``, the directory of its TLS certificates (``ca.pem``, ``cert.pem``,
``key.pem``, as the docker CLI's ``DOCKER_CERT_PATH``). ``choose_engine`` picks the one a command
builds on: ``--engine`` replaces WORKSPACE's list (an entry with the same URL lends it its jobs,
platforms and TLS directory); none at all is the engine at ``DOCKER_HOST``, else the local socket.
``build`` (and ``test``, ``sbom``) place work on every engine chosen (``pipeline/placement.py``);
commands that need only one engine (``gc``, ``lock``, ``lint``) use the first, the *home* engine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.errors import UsageError

LOCAL_SOCKET = "unix:///var/run/docker.sock"  # the engine when neither --engine, WORKSPACE nor DOCKER_HOST names one
SCHEMES = ("unix://", "tcp://", "ssh://")
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
SEVERAL_ENGINES_NEED_A_REGISTRY = (
    "building on several engines needs a registry cache (their shared state: a parent built on one engine "
    "reaches a child on another through it): set registry= in WORKSPACE or pass --registry"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSpec:
    """One engine to build on."""

    url: str  # unix:///path, tcp://host:port or ssh://[user@]host[:port]
    jobs: int | None = None  # builds at once on it; None: --jobs, else the cores here
    platforms: tuple[str, ...] = ()  # canonical; the first is the engine's own; (): asked from the engine
    tls: str | None = None  # absolute directory holding TLS_FILES (tcp:// only); None: DOCKER_TLS_VERIFY's

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0]


def engine_url(spec: EngineSpec | None) -> str:
    """The URL of the engine ``spec`` names (None: DOCKER_HOST's, else the local socket)."""
    return spec.url if spec is not None else os.environ.get("DOCKER_HOST") or LOCAL_SOCKET


def records_namespace(url: str) -> str | None:
    """Whose build records an engine's are (``cache/names.py: record``): None for the local socket's
    (the names every earlier run wrote), else its URL: an image ID means nothing on another engine."""
    return None if url == LOCAL_SOCKET else url


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an engine address this tool takes, or None."""
    scheme = next((s for s in SCHEMES if url.startswith(s)), None)
    if scheme is None:
        return f"an engine URL starts with {', '.join(SCHEMES)}; got {url!r}"
    rest = url.removeprefix(scheme)
    if scheme == "unix://":
        return None if rest.startswith("/") else f"{url!r}: unix:// takes an absolute socket path (unix:///run/x.sock)"
    if not rest or rest.startswith(("/", ":")) or any(c.isspace() for c in rest):
        return f"{url!r}: {scheme} needs a host ({scheme}host:port)"
    if scheme == "tcp://":
        host, sep, port = rest.rstrip("/").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            return f"{url!r}: tcp:// needs host:port (tcp://10.0.0.5:2376)"
    return None


def choose_engines(given: Sequence[str], declared: Sequence[EngineSpec]) -> tuple[EngineSpec, ...]:
    """The engines to build on, the home engine first: ``--engine`` (``given``) replaces WORKSPACE's
    ``declared`` list; an engine named twice counts once.

    ``()``: neither names one (DOCKER_HOST, else the local socket). UsageError (exit 2) for a URL this
    tool does not take.
    """
    if not given:
        return tuple(dict.fromkeys(declared))
    chosen: dict[str, EngineSpec] = {}
    for url in given:
        problem = url_problem(url)
        if problem is not None:
            raise UsageError(f"--engine: {problem}")
        chosen.setdefault(url, next((spec for spec in declared if spec.url == url), EngineSpec(url=url)))
    return tuple(chosen.values())


def home_engine(given: Sequence[str], declared: Sequence[EngineSpec]) -> EngineSpec | None:
    """The first engine :func:`choose_engines` gives (None: DOCKER_HOST's, else the local socket):
    where commands that need one engine run."""
    chosen = choose_engines(given, declared)
    return chosen[0] if chosen else None
