"""Building on a remote engine (step 11, in part): ``--engine tcp://...`` with mutual TLS from WORKSPACE.

A private dockerd (tests/engines.py) listens on its own unix socket and on ``tcp://127.0.0.1:<port>``
with ``--tlsverify``; the certificates are made here. The CLI runs as a process of its own with
``REQUESTS_CA_BUNDLE`` set to the system's bundle (which does not hold the test CA): the TLS client
must use the engine's CA regardless. Both builders reach the engine: the classic one through the
SDK, BuildKit through the docker CLI (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines import PrivateEngine, make_certificates
from tests.integration.conftest import BUSYBOX_IMAGE, _check_static_busybox, _rootfs_tar, _unavailable

pytestmark = pytest.mark.integration

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # valid, and without the test CA
RUN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def tls_engine() -> Iterator[PrivateEngine]:
    """A private engine on its socket and on TCP with mutual TLS, holding ``BUSYBOX_IMAGE``."""
    from tests.engines import EngineStartError, running_engine

    _check_static_busybox()
    if shutil.which("openssl") is None:
        _unavailable("the TLS engine test needs the openssl CLI (apt-get install openssl)")
    try:
        context = running_engine(tls=True)
        engine = context.__enter__()
    except EngineStartError as exc:
        _unavailable(f"cannot start a private Docker Engine: {exc}")
        raise
    try:
        engine.import_rootfs(BUSYBOX_IMAGE, _rootfs_tar())
        yield engine
    finally:
        context.__exit__(None, None, None)


def _family(root: Path, engine: PrivateEngine, tls: Path, suffix: str) -> tuple[str, str]:
    """A base and an app on it, and WORKSPACE naming the TLS engine; their repositories."""
    base, app = f"remote-base-{suffix}", f"remote-app-{suffix}"
    shutil.copytree(tls, root / "certs")
    files = {
        "WORKSPACE": f'workspace(\n    engines = [{{"url": "{engine.tcp_url}", "tls": "certs", "jobs": 2}}],\n)\n',
        "base/BUILD": f'image(name = "base", repository = "{base}")\n',
        "base/Dockerfile": f"FROM {BUSYBOX_IMAGE}\nRUN echo base > /base\n",
        "app/BUILD": f'image(name = "app", repository = "{app}")\n',
        "app/Dockerfile": f"FROM {base}:latest\nRUN cat /base > /app\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return base, app


def _orchestrator(root: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}
    env["REQUESTS_CA_BUNDLE"] = env["CURL_CA_BUNDLE"] = SYSTEM_BUNDLE
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "--cache-dir", str(cache), "--workspace", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def _tags(api: Any, repository: str) -> list[str]:
    return sorted(tag for image in api.images(name=repository) for tag in image.get("RepoTags") or ())


@pytest.mark.parametrize("executor", ["classic", "buildkit"])
def test_a_family_builds_on_a_tls_engine_named_on_the_command_line(
    tls_engine: PrivateEngine, tmp_path: Path, executor: str
) -> None:
    import docker

    if not Path(SYSTEM_BUNDLE).is_file():
        pytest.skip(f"no system CA bundle at {SYSTEM_BUNDLE}")
    root, cache, report = tmp_path / "ws", tmp_path / "cache", tmp_path / "report.json"
    base, app = _family(root, tls_engine, tls_engine.client_tls, f"{executor}-{uuid.uuid4().hex[:8]}")

    built = _orchestrator(
        root, cache, "build", "--engine", tls_engine.tcp_url, "--executor", executor, "--report", str(report)
    )
    assert built.returncode == 0, built.stdout + built.stderr
    result = json.loads(report.read_text())
    assert result["executor"]["used"] == executor
    assert {node["status"] for node in result["nodes"]} == {"built"}

    private = tls_engine.client()
    default = docker.APIClient(version="auto")
    try:
        for repository in (base, app):
            assert _tags(private, repository), f"{repository} is not on the private engine"
            assert _tags(default, repository) == [], f"{repository} was built on the default engine too"
        # The same engine through its unix socket: every record checks out against its images.
        again = _orchestrator(root, cache, "build", "--engine", tls_engine.url, "--report", str(report))
        assert again.returncode == 0, again.stdout + again.stderr
        assert {node["status"] for node in json.loads(report.read_text())["nodes"]} == {"cached"}
    finally:
        default.close()
        for repository in (app, base):
            for image in private.images(name=repository, quiet=True):
                private.remove_image(image, force=True)
        private.close()


def test_a_client_certificate_the_engine_does_not_trust_fails_naming_the_engine(
    tls_engine: PrivateEngine, tmp_path: Path
) -> None:
    make_certificates(tmp_path / "stranger")  # another CA: dockerd refuses its client, we refuse its server
    root, cache = tmp_path / "ws", tmp_path / "cache"
    _family(root, tls_engine, tmp_path / "stranger" / "client", uuid.uuid4().hex[:8])

    failed = _orchestrator(root, cache, "build", "--engine", tls_engine.tcp_url, "--executor", "classic")

    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert f"ERROR cannot reach the Docker daemon at {tls_engine.tcp_url}: " in failed.stderr
    assert str(root / "certs") in failed.stderr
    assert "Traceback" not in failed.stderr
