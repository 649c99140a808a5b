"""Credentials from the Docker config file: inline ``auths``, and credential helpers run as ``docker`` runs them."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from docker.auth import INDEX_NAME, INDEX_URL

from orchestrator.registry.credentials import CredentialsError, read_credentials

# A credential helper: ``get`` reads the server on stdin and answers from $HELPER_STORE (a JSON
# object server -> [user, secret]), or fails as real helpers do when it knows nothing of the server.
HELPER = """#!/bin/sh
set -eu
[ "$1" = get ] || exit 2
server=$(cat)
echo "$server" >> "$HELPER_STORE.asked"
exec python3 -c '
import json, sys
store = json.load(open(sys.argv[1]))
server = sys.argv[2]
if server not in store:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = store[server]
print(json.dumps({"ServerURL": server, "Username": user, "Secret": secret}))
' "$HELPER_STORE" "$server"
"""


def encoded(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``docker-credential-testhelper`` on PATH; write its store (server -> [user, secret]) to the path returned."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "docker-credential-testhelper"
    program.write_text(HELPER)
    program.chmod(0o755)
    store = tmp_path / "helper-store.json"
    store.write_text("{}")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HELPER_STORE", str(store))
    return store


def asked(store: Path) -> list[str]:
    path = Path(f"{store}.asked")
    return path.read_text().split() if path.exists() else []


def test_read_credentials(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.json",
        {
            "auths": {
                "https://reg.example.com": {"auth": encoded("alice", "pa:ss")},
                "http://127.0.0.1:5000/v2/": {"auth": encoded("bob", "secret")},
                "plain.example.com": {"username": "carol", "password": "pw"},
                INDEX_URL: {"auth": encoded("dave", "hub")},
                "broken.example.com": {"auth": "!!!"},
            }
        },
    )
    found = read_credentials("reg.example.com", path)
    assert found is not None and (found.username, found.password) == ("alice", "pa:ss")
    assert "pa:ss" not in repr(found)
    found = read_credentials("127.0.0.1:5000", path)
    assert found is not None and found.username == "bob"
    found = read_credentials("plain.example.com", path)
    assert found is not None and found.password == "pw"
    found = read_credentials(INDEX_NAME, path)
    assert found is not None and found.username == "dave"
    assert read_credentials("broken.example.com", path) is None
    assert read_credentials("other.example.com", path) is None
    assert read_credentials("reg.example.com", tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CredentialsError, match=r"bad\.json"):
        read_credentials("reg.example.com", tmp_path / "bad.json")


def test_default_auth_file_follows_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path / "config.json", {"auths": {"reg.example.com": {"auth": encoded("eve", "x")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    found = read_credentials("reg.example.com")
    assert found is not None and found.username == "eve"


def test_cred_helpers_name_the_helper_of_a_host(tmp_path: Path, helper: Path) -> None:
    helper.write_text(json.dumps({"127.0.0.1:5000": ["ci", "from-helper"]}))
    config = write_config(
        tmp_path / "config.json",
        {
            "credHelpers": {"127.0.0.1:5000": "testhelper"},
            "auths": {"127.0.0.1:5000": {"auth": encoded("inline", "ignored")}},
        },
    )
    found = read_credentials("127.0.0.1:5000", config)
    assert found is not None and (found.username, found.password) == ("ci", "from-helper")
    assert asked(helper) == ["127.0.0.1:5000"]  # the host, as docker login stored it
    assert read_credentials("other.example.com", config) is None  # no helper for it, no auths
    assert asked(helper) == ["127.0.0.1:5000"]


def test_creds_store_serves_every_host_and_inline_auths_fill_in(tmp_path: Path, helper: Path) -> None:
    helper.write_text(json.dumps({"reg.example.com": ["alice", "a"], INDEX_URL: ["hub-user", "h"]}))
    config = write_config(
        tmp_path / "config.json",
        {"credsStore": "testhelper", "auths": {"other.example.com": {"auth": encoded("bob", "b")}}},
    )
    found = read_credentials("reg.example.com", config)
    assert found is not None and found.username == "alice"
    found = read_credentials(INDEX_NAME, config)  # the default registry is asked by its index URL
    assert found is not None and found.username == "hub-user"
    found = read_credentials("other.example.com", config)  # the helper knows nothing: the inline entry
    assert found is not None and found.username == "bob"
    assert read_credentials("nobody.example.com", config) is None
    assert asked(helper) == ["reg.example.com", INDEX_URL, "other.example.com", "nobody.example.com"]


def test_a_helper_identity_token_counts_as_no_credentials(tmp_path: Path, helper: Path) -> None:
    helper.write_text(json.dumps({"reg.example.com": ["<token>", "refresh-token"]}))
    config = write_config(tmp_path / "config.json", {"credsStore": "testhelper"})
    assert read_credentials("reg.example.com", config) is None


def test_a_missing_helper_is_an_error_naming_it(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json", {"credHelpers": {"reg.example.com": "nosuchhelper"}})
    with pytest.raises(CredentialsError, match=r"docker-credential-nosuchhelper is not installed or not on PATH"):
        read_credentials("reg.example.com", config)


def test_a_failing_helper_is_an_error_with_its_words(tmp_path: Path, helper: Path) -> None:
    helper.write_text("not json")
    config = write_config(tmp_path / "config.json", {"credsStore": "testhelper"})
    with pytest.raises(CredentialsError, match=r"docker-credential-testhelper .* for reg.example.com failed"):
        read_credentials("reg.example.com", config)
