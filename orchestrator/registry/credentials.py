"""A registry's user and password, found in the Docker client's config file as ``docker`` finds them.

The file is ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``. For a host:

    credHelpers[host] = "<name>"   -> ask ``docker-credential-<name> get``
    else credsStore = "<name>"     -> ask ``docker-credential-<name> get``
    the helper knows nothing       -> auths[host] (``auth``, else ``username``/``password``)

which is also the order the docker SDK follows when the engine pushes and pulls, so the HTTP client
and the engine use the same credentials. Helpers run through the SDK's ``docker.credentials``
(imported only when a helper is named). Identity tokens (a helper answering the user ``<token>``)
are not supported: such an answer counts as none.

    unreadable config file, helper missing, failing or answering nonsense -> CredentialsError (exit 2)
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.registry.defaults import default_registry_hosts, default_registry_name

HELPER_PREFIX = "docker-credential-"
IDENTITY_TOKEN_USER = "<token>"


class CredentialsError(OrchestratorError):
    """The Docker config file cannot be read, or its credential helper failed (exit 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never shown

    def header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def read_credentials(host: str, auth_file: Path | None = None) -> Credentials | None:
    """The user and password for ``host`` (``host[:port]``), or None when the config has none."""
    path = auth_file if auth_file is not None else default_auth_file()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read the Docker config file {path}: {exc}") from exc
    if not isinstance(config, dict):
        return None
    helper = helper_for(config, host)
    if helper is not None:
        found = helper_credentials(helper, host, path)
        if found is not None:
            return found
    return _inline_credentials(config, host)


def default_auth_file() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def helper_for(config: Mapping[str, Any], host: str) -> str | None:
    """The credential helper the config names for ``host``: its ``credHelpers`` entry, else ``credsStore``."""
    wanted = _auth_key(host)
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if isinstance(name, str) and name and _auth_key(str(key)) == wanted:
                return name
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


def helper_credentials(helper: str, host: str, config_path: Path) -> Credentials | None:
    """What ``docker-credential-<helper> get`` answers for ``host``; None when it knows nothing of it."""
    import docker.credentials

    program = HELPER_PREFIX + helper
    where = f"the credential helper {program} (named in {config_path}) for {host}"
    # Checked here: the SDK's Store only warns when the program is missing, and fails later.
    if shutil.which(program) is None:
        raise CredentialsError(f"{where}: {program} is not installed or not on PATH")
    # The server as docker login stored it: the host, or the default registry's index URL.
    server = docker.auth.INDEX_URL if _auth_key(host) == default_registry_name() else host
    try:
        answer = docker.credentials.Store(helper).get(server)
    except docker.credentials.CredentialsNotFound:
        return None
    except (docker.credentials.StoreError, ValueError, KeyError) as exc:  # ValueError: not JSON
        raise CredentialsError(f"{where} failed: {str(exc).strip()}") from exc
    if not isinstance(answer, dict):
        raise CredentialsError(f"{where} answered {type(answer).__name__}, not a JSON object")
    username, secret = answer.get("Username"), answer.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialsError(f"{where} answered without a string Username and Secret")
    if not username or username == IDENTITY_TOKEN_USER:
        return None  # an identity token (OAuth refresh) is not supported
    return Credentials(username=username, password=secret)


def _inline_credentials(config: Mapping[str, Any], host: str) -> Credentials | None:
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    wanted = _auth_key(host)
    for key, entry in auths.items():
        if isinstance(entry, dict) and _auth_key(str(key)) == wanted:
            found = _entry_credentials(entry)
            if found is not None:
                return found
    return None


def _auth_key(key: str) -> str:
    """The host of a config key, which may carry a scheme and a path (``https://host/v1/``)."""
    text = key.strip().lower()
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    host = text.partition("/")[0]
    return default_registry_name() if host in default_registry_hosts() else host


def _entry_credentials(entry: Mapping[str, Any]) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Credentials(username=username, password=password) if sep else None
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(username=user, password=secret)
    return None
