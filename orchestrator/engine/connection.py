"""The connection to one Docker Engine: how ``docker.py`` and ``docker_probe.py`` reach their engine.

An EngineConnection holds the engine's address, the docker SDK's low-level ``APIClient`` (made on
first use), the engine's native platform, and the translation of the SDK's and HTTP exceptions
raised inside ``errors(action)`` (``raise ... from exc``):

    connection refused, no socket, timeouts    -> DaemonUnavailable (exit 2)
    an API error                               -> EngineError (exit 2)

The executor package imports ``docker`` here only, lazily (``sdk()``) so that importing it stays
cheap; the engine modules reach the SDK's exceptions through ``sdk()``. The two requests a no-op
build makes (ping, one image listing) go straight to a local engine's socket with ``http.client``
(``get_json``): importing the SDK alone costs about 160 ms. (Outside the package, only
``registry/defaults.py`` reads a few of the SDK's constants, from ``docker.auth``.)
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator.core.platforms import normalize
from orchestrator.engine.api import DaemonUnavailable
from orchestrator.errors import OrchestratorError, failure_reason

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
        with self._lock:
            known = self._native_platform
        if known is None:
            version = self.get_json("/version", "asking the engine's version")
            known = normalize(f"{version.get('Os', 'linux')}/{version.get('Arch', '')}")
            with self._lock:
                self._native_platform = known
        return known

    def ping(self, *, timeout: float | None = None) -> None:
        """Raise DaemonUnavailable unless the engine answers ``/_ping`` within ``timeout`` (default: the client's)."""
        self.get_json("/_ping", "ping", timeout=timeout)

    def get_json(self, path: str, action: str, *, timeout: float | None = None) -> Any:
        """``GET path`` (``/images/json``) decoded; over the socket itself for a local engine."""
        socket_path = self._plain_unix_socket()
        if socket_path is None:
            api = self.client()
            with self.errors(action):
                response = api._get(api._url(path), timeout=timeout or self.timeout)
                api._raise_for_status(response)
                return response.json() if path != "/_ping" else response.text
        connection = _UnixConnection(socket_path, timeout or self.timeout)
        try:
            connection.request("GET", path, headers={"Host": "docker"})
            response = connection.getresponse()
            body = response.read()
        except OSError as exc:
            raise DaemonUnavailable(
                f"cannot reach the Docker daemon at {self.url}: {failure_reason(exc)}; is dockerd running? "
                "(try: dockerd &, or set DOCKER_HOST)"
            ) from exc
        finally:
            connection.close()
        if response.status >= 400:
            raise EngineError(f"the Docker Engine at {self.url} failed {action}: HTTP {response.status} {body[:200]!r}")
        return json.loads(body) if path != "/_ping" else body.decode()

    def _plain_unix_socket(self) -> str | None:
        """The socket path when the engine is local and plain (no TLS), else None."""
        if os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH"):
            return None
        url = self.url
        path = url.removeprefix("http+unix://").removeprefix("unix://")
        return None if path == url else path

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
                f"cannot reach the Docker daemon at {self.url}: {failure_reason(exc)}; is dockerd running? "
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


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a Unix socket (the engine's API, without the SDK)."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
