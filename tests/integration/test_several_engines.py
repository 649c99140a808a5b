"""Building one family on several engines (step 11), with real engines and a real registry.

Three private dockerds (tests/engines.py: each its own data-root, exec-root, containerd, socket and
bridge; the third also on TCP with mutual TLS, certificates made there) and the local registry: a
family builds across them with every key built once, children placed on another engine than their
parent get it through the registry by digest, and an engine killed mid-build leaves a complete run.
All engines share this machine's kernel: native placement is tested through declared platforms in
the unit tests (tests/unit/test_several_engines.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines import PrivateEngine
from tests.integration.conftest import BUSYBOX_IMAGE, _check_static_busybox, _rootfs_tar, _unavailable
from tests.invariants import assert_invariants

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 240.0
CHILDREN = ("c1", "c2", "c3", "c4")


@contextlib.contextmanager
def _engines(count: int, *, tls_last: bool) -> Iterator[list[PrivateEngine]]:
    from tests.engines import EngineStartError, running_engine

    _check_static_busybox()
    if tls_last and shutil.which("openssl") is None:
        _unavailable("the TLS engine needs the openssl CLI (apt-get install openssl)")
    with contextlib.ExitStack() as stack:
        engines = []
        for index in range(count):
            try:
                engine = stack.enter_context(running_engine(tls=tls_last and index == count - 1))
            except EngineStartError as exc:
                _unavailable(f"cannot start a private Docker Engine: {exc}")
                raise
            engine.import_rootfs(BUSYBOX_IMAGE, _rootfs_tar())
            engines.append(engine)
        yield engines


@pytest.fixture(scope="module")
def three_engines() -> Iterator[list[PrivateEngine]]:
    """Two engines on their sockets and one over TCP with mutual TLS, each holding ``BUSYBOX_IMAGE``."""
    with _engines(3, tls_last=True) as engines:
        yield engines


def _workspace(root: Path, engines: list[PrivateEngine], registry: str, prefix: str, *, slow: str = "") -> None:
    """A base, four children of it and a grandchild; WORKSPACE names the engines (jobs 1 each) and the registry."""
    entries = []
    for engine in engines:
        if engine.tcp_port is not None:
            shutil.copytree(engine.client_tls, root / "certs")
            entries.append(f'{{"url": "{engine.tcp_url}", "tls": "certs", "jobs": 1}}')
        else:
            entries.append(f'{{"url": "{engine.url}", "jobs": 1}}')
    files = {
        "WORKSPACE": f'workspace(registry = "{registry}", engines = [{", ".join(entries)}])\n',
        "base/BUILD": f'image(name = "base", repository = "{prefix}-base")\n',
        "base/Dockerfile": f"FROM {BUSYBOX_IMAGE}\nRUN echo base > /base\n",
        "g/BUILD": f'image(name = "g", repository = "{prefix}-g")\n',
        "g/Dockerfile": f"FROM {prefix}-c1:latest\nRUN cat /c1 > /g\n",
    }
    for child in CHILDREN:
        pause = slow if slow and child == "c2" else "sleep 1"
        files[f"{child}/BUILD"] = f'image(name = "{child}", repository = "{prefix}-{child}")\n'
        files[f"{child}/Dockerfile"] = f"FROM {prefix}-base:latest\nRUN {pause} && cat /base > /{child}\n"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _command(root: Path, cache: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "--cache-dir", str(cache), "--workspace", str(root), *args]


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}


def _orchestrator(root: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(root, cache, *args),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def _url_of(engine: PrivateEngine) -> str:
    return engine.tcp_url if engine.tcp_port is not None else engine.url


def _image_id(api: Any, reference: str) -> str | None:
    import docker.errors

    try:
        return str(api.inspect_image(reference)["Id"])
    except docker.errors.NotFound:
        return None


def _file_in(api: Any, image: str, path: str) -> str:
    """The text of ``path`` inside ``image`` (a container is created, never started)."""
    import io
    import tarfile

    container = api.create_container(image, command=["true"])
    try:
        stream, _ = api.get_archive(container["Id"], path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile(archive.getmembers()[0])
            assert member is not None
            return member.read().decode()
    finally:
        api.remove_container(container["Id"], force=True)


def _nodes(report: Path) -> dict[str, dict[str, Any]]:
    return {node["label"]: node for node in json.loads(report.read_text())["nodes"]}


def test_a_family_builds_across_three_engines_with_each_key_built_once(
    three_engines: list[PrivateEngine], module_registry: str, tmp_path: Path
) -> None:
    prefix = f"multi-{uuid.uuid4().hex[:8]}"
    root, cache, report = tmp_path / "ws", tmp_path / "cache", tmp_path / "report.json"
    _workspace(root, three_engines, module_registry, prefix)
    urls = [_url_of(e) for e in three_engines]

    built = _orchestrator(root, cache, "build", "--report", str(report))
    assert built.returncode == 0, built.stdout + built.stderr
    nodes = _nodes(report)
    assert {n["status"] for n in nodes.values()} == {"built"}
    assert {n["engine"] for n in nodes.values()} <= set(urls)
    assert len({n["engine"] for n in nodes.values()}) >= 2, nodes  # four children, one slot per engine
    clients = {url: engine.client() for url, engine in zip(urls, three_engines, strict=True)}
    try:
        for label, node in nodes.items():
            content = node["tags"][0]
            built_id = _image_id(clients[node["engine"]], content)
            assert built_id == node["image_id"], f"{label}: not on the engine that built it"
            for url, api in clients.items():  # a copy elsewhere is the same image, pulled by digest, never rebuilt
                assert _image_id(api, content) in (None, built_id), f"{label} was built again on {url}"
        base = nodes["//base:base"]
        elsewhere = [n for label, n in nodes.items() if label.startswith("//c") and n["engine"] != base["engine"]]
        assert elsewhere, "no child was placed on another engine than its parent"
        for child in elsewhere:
            api = clients[child["engine"]]
            assert _image_id(api, base["tags"][0]) == base["image_id"]  # the parent arrived by digest, checked
            name = child["label"].rsplit(":", 1)[1]
            assert _file_in(api, child["tags"][0], f"/{name}") == "base\n"
        for url, api in clients.items():
            assert_invariants(cache, api, engine=None if url.startswith("unix:///var/run/") else url)
        assert "ON " in built.stderr  # the live display says where each node runs

        again = _orchestrator(root, cache, "build", "--report", str(report))
        assert again.returncode == 0, again.stdout + again.stderr
        assert {n["status"] for n in _nodes(report).values()} == {"cached"}
    finally:
        for api in clients.values():
            api.close()


def test_a_dry_run_shows_the_placement(
    three_engines: list[PrivateEngine], module_registry: str, tmp_path: Path
) -> None:
    prefix = f"multi-{uuid.uuid4().hex[:8]}"
    root, cache = tmp_path / "ws", tmp_path / "cache"
    _workspace(root, three_engines, module_registry, prefix)
    planned = _orchestrator(root, cache, "build", "--dry-run", "-o", "json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    nodes = {n["label"]: n for n in json.loads(planned.stdout)["nodes"]}
    urls = {_url_of(e) for e in three_engines}
    assert all(n["engine"] in urls for n in nodes.values()), nodes
    text = _orchestrator(root, cache, "build", "--dry-run")
    assert text.returncode == 0
    assert any(url in text.stdout for url in urls), text.stdout


@pytest.mark.parametrize("fault", ["kill -9", "SIGSTOP"])
def test_an_engine_lost_mid_build_leaves_a_correct_complete_run(
    module_registry: str, tmp_path: Path, fault: str
) -> None:
    """dockerd killed (its build's stream breaks), or frozen (the build fails after --engine-timeout
    and the engine answers no ping): either way it is left, and the node is built on the other."""
    prefix = f"lost-{uuid.uuid4().hex[:8]}"
    root, cache, report = tmp_path / "ws", tmp_path / "cache", tmp_path / "report.json"
    with _engines(2, tls_last=False) as engines:
        _workspace(root, engines, module_registry, prefix, slow="sleep 25")
        by_url = {e.url: e for e in engines}
        command = _command(
            root, cache, "build", "--executor", "classic", "--engine-timeout", "4", "--report", str(report)
        )
        with subprocess.Popen(
            command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as run:
            killed = _lose_the_engine_running(engines, "sleep 25", run, fault)
            stdout, stderr = run.communicate(timeout=RUN_TIMEOUT_S)
        assert killed is not None, "the slow build never started"
        assert run.returncode == 0, stdout + stderr
        nodes = _nodes(report)
        assert {n["status"] for n in nodes.values()} <= {"built", "pulled"}
        slow = nodes["//c2:c2"]
        assert slow["status"] == "built" and slow["engine"] != killed.url
        assert f"engine {killed.url} went down" in stderr
        survivor = next(e for url, e in by_url.items() if url != killed.url)
        api = survivor.client()
        try:
            assert _file_in(api, slow["tags"][0], "/c2") == "base\n"
            assert_invariants(cache, api, engine=survivor.url)
            for tag in ("c2", "g"):  # human tags moved on the engine that holds the images
                assert _image_id(api, f"{prefix}-{tag}:latest") is not None
        finally:
            api.close()


def _lose_the_engine_running(
    engines: list[PrivateEngine], command: str, run: subprocess.Popen[str], fault: str
) -> PrivateEngine | None:
    """kill -9 (or SIGSTOP) the engine on which a build step running ``command`` appears; that engine
    (None if none did)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline and run.poll() is None:
        for engine in engines:
            api = engine.client()
            try:
                running = [c for c in api.containers() if command in " ".join(c.get("Command", "").split())]
            finally:
                api.close()
            if running:
                time.sleep(1.0)  # well into the step
                if fault == "kill -9":
                    engine.kill9()
                else:
                    engine.sigstop()
                return engine
        time.sleep(0.2)
    return None
