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

Transports: ``unix://`` (the fast path above), ``tcp://`` (with mutual TLS from a directory of
``ca.pem``, ``cert.pem``, ``key.pem``, else DOCKER_TLS_VERIFY's settings) and ``ssh://`` (the SDK runs
the ``ssh`` client: ``ssh -- host docker system dial-stdio``, so ``~/.ssh/config`` and the agent
apply). A TLS client does not read requests' environment: ``REQUESTS_CA_BUNDLE`` or
``CURL_CA_BUNDLE`` would otherwise replace the engine's CA for every request (a request-level
``verify`` wins over the session's), and no engine certificate would verify.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from orchestrator.core.engines import LOCAL_SOCKET, TLS_FILES
from orchestrator.core.platforms import normalize
from orchestrator.engine.api import DaemonUnavailable
from orchestrator.errors import OrchestratorError, failure_reason

DEFAULT_URL = LOCAL_SOCKET
DEFAULT_TIMEOUT_S = 60.0


class EngineError(OrchestratorError):
    """The Docker Engine refused a request, or answered it with something that cannot be used."""


@functools.cache
def sdk() -> Any:
    """The ``docker`` package, imported on first use."""
    import docker
    import docker.constants
    import docker.errors
    import docker.tls
    import docker.utils

    return docker


class EngineConnection:
    """The client of one Docker Engine, made on first use; safe to share between threads.

    ``base_url`` defaults to ``DOCKER_HOST`` (with its TLS settings), else the local socket.
    ``tls_dir`` (a ``tcp://`` engine's ``ca.pem``, ``cert.pem``, ``key.pem``) replaces the
    environment's TLS settings; the docker CLI of BuildKit builds is given the same directory.
    ``platforms``, when given, are the engine's native platforms (the first is its own): it is not asked.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        tls_dir: str | None = None,
        platforms: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._base_url = base_url
        self.tls_dir = tls_dir
        self.timeout = timeout
        self._lock = threading.Lock()  # guards _client and _native_platform
        self._client: Any = None
        self._native_platform: str | None = normalize(platforms[0]) if platforms else None

    @property
    def url(self) -> str:
        """The engine's address, for messages."""
        return self._base_url or os.environ.get("DOCKER_HOST") or DEFAULT_URL

    def client(self) -> Any:
        """The SDK's ``APIClient``; the first call connects (DaemonUnavailable when nobody answers)."""
        with self._lock:
            if self._client is None:
                with self.errors("connecting"):
                    self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        docker = sdk()
        kwargs = client_kwargs(self._base_url, self.tls_dir)
        if kwargs.get("use_ssh_client"):
            check_ssh_transport(self.url)
        probe_unix_socket(kwargs.get("base_url") or DEFAULT_URL, self.timeout)
        if "tls" not in kwargs:
            # version="auto" asks the engine its API version: this is the first contact.
            return docker.APIClient(version="auto", timeout=self.timeout, **kwargs)
        # With TLS, the session must stop reading requests' environment before its first request.
        api = docker.APIClient(version=docker.constants.MINIMUM_DOCKER_API_VERSION, timeout=self.timeout, **kwargs)
        isolate_from_environment(api)
        try:
            api._version = api._retrieve_server_version()
        except BaseException:
            api.close()
            raise
        return api

    def native_platform(self) -> str:
        """The engine's own platform (normalized): the first declared, else asked once."""
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
        if self.tls_dir is not None:
            return None
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
            raise DaemonUnavailable(f"cannot reach the Docker daemon at {self.url}: {self._hint(exc)}") from exc

    def _hint(self, exc: BaseException) -> str:
        """Why the engine could not be reached, and what to check."""
        reason = failure_reason(exc)
        if self.tls_dir is not None:
            return (
                f"{reason}; check that it listens there with TLS and trusts this client: the certificates in "
                f"{self.tls_dir} ({', '.join(TLS_FILES)})"
            )
        if self.url.startswith("ssh://"):
            return f"{reason}; check that the ssh client logs in there and `docker system dial-stdio` runs there"
        return f"{reason}; is dockerd running? (try: dockerd &, or set DOCKER_HOST)"


def client_kwargs(base_url: str | None, tls_dir: str | None) -> dict[str, Any]:
    """The ``APIClient`` arguments for the engine at ``base_url`` (None: DOCKER_HOST's), besides version and timeout.

    A TLS directory replaces the environment's DOCKER_TLS_VERIFY and DOCKER_CERT_PATH; ``ssh://``
    uses the ``ssh`` client (``use_ssh_client``), not paramiko.
    """
    docker = sdk()
    if tls_dir is None:
        kwargs: dict[str, Any] = docker.utils.kwargs_from_env()  # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
    else:
        ca, cert, key = (os.path.join(tls_dir, name) for name in TLS_FILES)
        kwargs = {"tls": docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)}
    if base_url is not None:
        kwargs["base_url"] = base_url
    if str(kwargs.get("base_url") or "").startswith("ssh://"):
        kwargs["use_ssh_client"] = True
    return kwargs


def check_ssh_transport(url: str) -> None:
    """EngineError unless the SDK's ssh transport imports: it needs paramiko even to run the ssh client."""
    try:
        import docker.transport.sshconn  # noqa: F401
    except ImportError as exc:
        raise EngineError(
            f"cannot reach the Docker Engine at {url}: the docker SDK's ssh:// transport needs the paramiko "
            f"package ({exc}); install it (pip install 'docker[ssh]') or reach the engine over tcp:// with TLS"
        ) from None


def isolate_from_environment(api: Any) -> None:
    """Make ``api`` (a requests session) deaf to ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` and ``.netrc``.

    requests merges them into each request, and a request's ``verify`` wins over the session's: the
    engine's CA (the session's ``verify``) would be replaced by the environment's bundle. The
    environment's proxies for the engine's address are kept, as the session would have used them.
    """
    import requests.utils

    proxies = requests.utils.get_environ_proxies(api.base_url)
    api.trust_env = False
    api.proxies.update(proxies)


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
