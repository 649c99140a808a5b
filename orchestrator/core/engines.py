"""The engines a build may run on: ``workspace(engines = [...])`` and ``--engine URL``, as values.

An ``EngineSpec`` says where a Docker Engine answers (``unix://``, ``tcp://``, ``ssh://``), how many
builds it takes at once (the default of ``--jobs``), its native platforms (default: asked from the
engine) and, for ``tcp://``, the directory of its TLS certificates (``ca.pem``, ``cert.pem``,
``key.pem``, as the docker CLI's ``DOCKER_CERT_PATH``). ``choose_engine`` picks the one a command
builds on: ``--engine`` replaces WORKSPACE's list (an entry with the same URL lends it its jobs,
platforms and TLS directory); none at all is the engine at ``DOCKER_HOST``, else the local socket.
For now a command builds on exactly one engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.errors import UsageError

SCHEMES = ("unix://", "tcp://", "ssh://")
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
SEVERAL_ENGINES = (
    "building on several engines needs a registry cache and comes with step 11's placement; give one --engine"
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


def choose_engine(given: Sequence[str], declared: Sequence[EngineSpec]) -> EngineSpec | None:
    """The engine to build on: ``--engine`` (``given``) replaces WORKSPACE's ``declared`` list.

    None: neither names one (DOCKER_HOST, else the local socket). UsageError (exit 2) for two or
    more, or a URL this tool does not take.
    """
    if len(given) > 1 or (not given and len(declared) > 1):
        where = f"{len(given)} --engine options" if given else f"WORKSPACE declares {len(declared)} engines"
        raise UsageError(f"{where}: {SEVERAL_ENGINES}")
    if not given:
        return declared[0] if declared else None
    url = given[0]
    problem = url_problem(url)
    if problem is not None:
        raise UsageError(f"--engine: {problem}")
    return next((spec for spec in declared if spec.url == url), EngineSpec(url=url))
