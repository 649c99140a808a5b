"""The connection to one Docker Engine: how ``docker.py`` and ``docker_probe.py`` reach their engine.

An EngineConnection holds the engine's address, the docker SDK's low-level ``APIClient`` (made on
first use), the engine's native platform, and the translation of the SDK's and HTTP exceptions
raised inside ``errors(action)`` (``raise ... from exc``):

    connection refused, no socket, timeouts    -> DaemonUnavailable (exit 2)
    an API error                               -> EngineError (exit 2)

The executor package imports ``docker`` here only, lazily (``sdk()``) so that importing it stays
cheap; the engine modules reach the SDK's exceptions through ``sdk()``. (Outside the package, only
``default_registry.py`` reads a few of the SDK's constants, from ``docker.auth``.)
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.executor.api import DaemonUnavailable
from orchestrator.platforms import normalize

DEFAULT_URL = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT_S = 60.0


class EngineError(OrchestratorError):
    """The Docker Engine refused a request, or answered it with something that cannot be used."""


@functools.cache
def sdk() -> Any:
    """The ``docker`` package, imported on first use."""
    import docker
    import docker.errors
    import docker.utils

    return docker


class EngineConnection:
    """The client of one Docker Engine, made on first use; safe to share between threads.

    ``base_url`` defaults to ``DOCKER_HOST`` (with its TLS settings), else the local socket.
    """

    def __init__(self, base_url: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._base_url = base_url
        self.timeout = timeout
        self._lock = threading.Lock()  # guards _client and _native_platform
        self._client: Any = None
        self._native_platform: str | None = None

    @property
    def url(self) -> str:
        """The engine's address, for messages."""
        return self._base_url or os.environ.get("DOCKER_HOST") or DEFAULT_URL

    def client(self) -> Any:
        """The SDK's ``APIClient``; the first call connects (DaemonUnavailable when nobody answers)."""
        with self._lock:
            if self._client is None:
                with self.errors("connecting"):
                    docker = sdk()
                    kwargs = docker.utils.kwargs_from_env()  # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
                    if self._base_url is not None:
                        kwargs["base_url"] = self._base_url
                    probe_unix_socket(kwargs.get("base_url") or DEFAULT_URL, self.timeout)
                    # version="auto" asks the engine its API version: this is the first contact.
                    self._client = docker.APIClient(version="auto", timeout=self.timeout, **kwargs)
            return self._client

    def native_platform(self) -> str:
        """The engine's own platform (normalized), asked once."""
        api = self.client()
        with self._lock:
            if self._native_platform is None:
                with self.errors("asking the engine's version"):
                    version = api.version()
                self._native_platform = normalize(f"{version.get('Os', 'linux')}/{version.get('Arch', '')}")
            return self._native_platform

    def close(self) -> None:
        """Close the client, if one was made; the next request makes a new one."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Translate the SDK's and requests' exceptions raised while doing ``action``."""
        import requests

        errors = sdk().errors
        try:
            yield
        except errors.APIError as exc:
            raise EngineError(f"the Docker Engine at {self.url} failed {action}: {exc.explanation or exc}") from exc
        except (errors.DockerException, requests.RequestException, OSError) as exc:
            raise DaemonUnavailable(
                f"cannot reach the Docker daemon at {self.url}: {reason(exc)}; is dockerd running? "
                "(try: dockerd &, or set DOCKER_HOST)"
            ) from exc


def probe_unix_socket(url: str, timeout: float) -> None:
    """Connect to a ``unix://`` engine once; OSError if nobody listens.

    The SDK leaves the socket of a failed Unix connect open (a ResourceWarning when collected, an
    error under ``-W error``), so the common case, no daemon, is found here with a socket closed.
    """
    path = url.removeprefix("http+unix://").removeprefix("unix://")
    if path == url:
        return  # tcp://, ssh://, npipe://: nothing leaks there
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)


def reason(exc: BaseException) -> str:
    """The operating system's words for a connection failure, else the exception's."""
    current: BaseException | None = exc
    while current is not None:
        for candidate in (current, *current.args):
            if isinstance(candidate, OSError) and candidate.strerror:
                return candidate.strerror
        current = current.__cause__ or current.__context__
    return str(exc)
