"""The scan gate (issue 16, item 3): WORKSPACE's ``scan`` run on each image built, on the FakeExecutor,
with a scanner script written by the test (it fails the references named in a ``fail`` file)."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cache import names
from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.cli import build_run
from orchestrator.core.engines import LOCAL_SOCKET
from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.engine import local
from orchestrator.pipeline.request import log_path
from orchestrator.pipeline.scan import ScanFailed, ScanGate, scan_log
from orchestrator.registry.cache import RemoteCache
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.workspaces import ScratchWorkspace

SCANNER = """\
#!{python}
import os, pathlib, sys, time

here = pathlib.Path(__file__).parent
ref = sys.argv[-1]
env = " ".join(os.environ.get(name, "-") for name in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"))
with open(here / "scans.txt", "a") as seen:
    seen.write(f"{{ref}} {{env}}\\n")
time.sleep(float(os.environ.get("SCAN_SLEEP", "0")))
for n in range(30):
    print("checked package", n)
fail = here / "fail"
if fail.exists() and any(word in ref for word in fail.read_text().split()):
    print("CRITICAL CVE-0000-0001 in", ref)
    sys.exit(3)
print("no vulnerabilities")
"""


@pytest.fixture
def scanner(tmp_path: Path) -> Path:
    """The scanner script (in a directory of its own, with its ``scans.txt`` and ``fail`` file)."""
    path = tmp_path / "scanner" / "scan-image"
    path.parent.mkdir()
    path.write_text(SCANNER.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry("127.0.0.1:5000")


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, registry: FakeRegistry) -> Iterator[FakeExecutor]:
    """The FakeExecutor behind ``orchestrator build``, with ``registry`` as the registry cache."""
    executor = FakeExecutor(write_logs=True, registry=registry)

    def connect(spec: object = None) -> local.Engine:
        return local.Engine(executor=executor, images=executor.references())

    monkeypatch.setattr(build_run, "connect", connect)
    monkeypatch.setattr(local, "connect", connect)
    monkeypatch.setattr(build_run, "remote_cache", lambda *args, **kwargs: RemoteCache(registry))
    yield executor


def write_family(ws: ScratchWorkspace, scanner: Path, *, timeout: str = "") -> None:
    ws.write(
        {
            "WORKSPACE": f'workspace(scan = "{scanner} --severity HIGH {{ref}}"{timeout})\n',
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM scratch\nCOPY hello /hello\n",
            "app/hello": "hi\n",
            "other/BUILD": 'image(name = "other")\n',
            "other/Dockerfile": "FROM scratch\nCOPY hello /hello\n",
            "other/hello": "other\n",
        }
    )


def scans(scanner: Path) -> list[str]:
    seen = scanner.parent / "scans.txt"
    return seen.read_text().splitlines() if seen.exists() else []


def app_key(ws: ScratchWorkspace) -> str:
    return ws.keys("//app:app")["//app:app linux/amd64"]


def test_a_passing_scan_lets_the_image_be_recorded_pushed_and_tagged(
    workspace: ScratchWorkspace, scanner: Path, engine: FakeExecutor, registry: FakeRegistry
) -> None:
    write_family(workspace, scanner)
    key = app_key(workspace)
    result = workspace.run("build")
    assert result.exit_code == 0, result.output
    assert f"app:key-{key} {LOCAL_SOCKET} - -" in scans(scanner)  # the content tag, on the engine holding it
    assert len(scans(scanner)) == 2
    assert engine.inspect("app:latest") is not None
    assert ("app", f"key-{key}") in registry.manifests
    with Store(workspace.cache_dir) as store:
        assert Records(store).get(key) is not None
        digest = hashlib.sha256(f"{scanner} --severity HIGH {{ref}}".encode()).hexdigest()
        assert store.get(names.scan(key, "linux/amd64", digest)) is not None


def test_a_failing_scan_fails_the_node_with_no_record_push_or_tag(
    workspace: ScratchWorkspace, scanner: Path, engine: FakeExecutor, registry: FakeRegistry
) -> None:
    write_family(workspace, scanner)
    assert workspace.run("build").exit_code == 0
    before = engine.inspect("app:latest")
    workspace.write({"app/hello": "changed\n"})
    key = app_key(workspace)
    (scanner.parent / "fail").write_text("app:")
    result = workspace.run("build")
    assert result.exit_code == 1, result.output
    assert f"scan failed: `{scanner} --severity HIGH app:key-{key}` exited with code 3" in result.stderr
    assert "CRITICAL CVE-0000-0001" in result.stderr  # the last lines of its output
    log = scan_log(log_path(workspace.cache_dir, Node(label=Label("app", "app"), platform="linux/amd64"), key))
    assert "full log:" in result.stderr and "checked package 0" in Path(log).read_text()  # beside the build log
    assert engine.inspect(f"app:key-{key}") is None  # the content tag is removed again
    assert engine.inspect("app:latest") == before  # the human tag did not move
    assert ("app", f"key-{key}") not in registry.manifests
    with Store(workspace.cache_dir) as store:
        assert Records(store).get(key) is None
    # a failure is not cached: the next run scans it again
    (scanner.parent / "fail").unlink()
    again = workspace.run("build")
    assert again.exit_code == 0, again.output
    assert engine.inspect("app:latest") == engine.inspect(f"app:key-{key}")
    assert [line for line in scans(scanner) if f"app:key-{key}" in line] == [f"app:key-{key} {LOCAL_SOCKET} - -"] * 2


def test_a_cached_pass_skips_the_scan_of_the_same_image(
    workspace: ScratchWorkspace, scanner: Path, engine: FakeExecutor
) -> None:
    write_family(workspace, scanner)
    assert workspace.run("build").exit_code == 0
    assert workspace.run("build").exit_code == 0  # all cached: nothing scanned
    rebuilt = workspace.run("build", "--no-cache", "//app")  # built again, same key: its pass is cached
    assert rebuilt.exit_code == 0, rebuilt.output
    assert len(engine.requests) == 3
    assert len(scans(scanner)) == 2


def test_rescan_scans_cached_images_and_a_failure_moves_no_tag(
    workspace: ScratchWorkspace, scanner: Path, engine: FakeExecutor
) -> None:
    write_family(workspace, scanner)
    key = app_key(workspace)
    assert workspace.run("build").exit_code == 0
    engine.remove("app:latest")
    (scanner.parent / "fail").write_text("app:")  # the vulnerability database learnt something
    assert workspace.run("build").exit_code == 0  # without --rescan the cached pass stands
    assert len(scans(scanner)) == 2
    engine.remove("app:latest")
    result = workspace.run("build", "--rescan")
    assert result.exit_code == 1, result.output
    assert len(scans(scanner)) == 4  # both images, although cached
    assert "FAILED //app:app linux/amd64: scan failed" in result.stderr
    assert engine.inspect("app:latest") is None  # not promoted
    assert engine.inspect(f"app:key-{key}") is not None  # the image is what its key names: it stays
    with Store(workspace.cache_dir) as store:
        assert Records(store).get(key) is not None
    (scanner.parent / "fail").unlink()
    assert workspace.run("build", "--rescan").exit_code == 0
    assert engine.inspect("app:latest") is not None
    assert len(engine.requests) == 2  # nothing was built again


def test_a_missing_scanner_stops_the_build_before_anything_is_built(
    workspace: ScratchWorkspace, engine: FakeExecutor
) -> None:
    write_family(workspace, Path("no-such-scanner-here"))
    result = workspace.run("build")
    assert result.exit_code == 2, result.output
    assert "the scanner 'no-such-scanner-here' is not on PATH" in result.stderr
    assert "scan = 'no-such-scanner-here --severity HIGH {ref}'" in result.stderr
    assert engine.requests == []


def test_a_scan_that_runs_too_long_fails_its_node(
    workspace: ScratchWorkspace, scanner: Path, engine: FakeExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_family(workspace, scanner, timeout=", scan_timeout = 0.5")
    monkeypatch.setenv("SCAN_SLEEP", "30")
    result = workspace.run("build", "//app")
    assert result.exit_code == 1, result.output
    assert "timed out after 0.5 s" in result.stderr
    assert engine.inspect("app:latest") is None


def test_the_scan_setting_changes_no_key(workspace: ScratchWorkspace, scanner: Path) -> None:
    write_family(workspace, scanner)
    with_scan = workspace.keys()
    workspace.write({"WORKSPACE": ""})
    assert workspace.keys() == with_scan


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ('scan = "trivy image"', "does not name the image: put {ref} where"),
        ('scan = ""', "scan is an empty command"),
        ('scan = "trivy \'unclosed {ref}"', "is not a command line"),
        ('scan = "x {ref}", scan_timeout = 0', "scan_timeout must be a positive number"),
    ],
)
def test_a_bad_scan_setting_is_refused(workspace: ScratchWorkspace, setting: str, error: str) -> None:
    workspace.write({"WORKSPACE": f"workspace({setting})\n", "app/BUILD": 'image(name = "app")\n'})
    workspace.write({"app/Dockerfile": "FROM scratch\n"})
    result = workspace.run("hash")
    assert result.exit_code == 2
    assert error in result.stderr


def test_the_scanner_reaches_a_tls_engine_through_its_directory(scanner: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "cache") as store:
        gate = ScanGate(
            command=f"{scanner} {{ref}}",
            store=store,
            timeout_s=10,
            tls_dirs={"tcp://127.0.0.1:2376": "/certs/b"},
            environ={**os.environ, "DOCKER_TLS_VERIFY": "", "DOCKER_HOST": "unix:///elsewhere.sock"},
        )
        node = Node(label=Label("app", "app"), platform="linux/amd64")
        gate.scan(
            "tcp://127.0.0.1:2376", node, "k1", "app:key-k1", log=str(tmp_path / "a.scan.log"), cancel=threading.Event()
        )
        assert scans(scanner) == ["app:key-k1 tcp://127.0.0.1:2376 1 /certs/b"]
        (scanner.parent / "fail").write_text("app:")
        with pytest.raises(ScanFailed) as failed:
            gate.scan(
                "tcp://127.0.0.1:2376",
                node,
                "k1",
                "app:key-k1",
                log=str(tmp_path / "a.scan.log"),
                cancel=threading.Event(),
            )
        assert failed.value.log_tail.splitlines()[-1] == "CRITICAL CVE-0000-0001 in app:key-k1"
        assert store.get(names.scan("k1", "linux/amd64", gate.digest)) is None  # the earlier pass no longer holds


def test_a_scanner_kept_in_the_workspace_is_found_from_its_root(
    workspace: ScratchWorkspace, engine: FakeExecutor
) -> None:
    write_family(workspace, Path("tools/scan-image"))
    workspace.write({"tools/scan-image": SCANNER.format(python=sys.executable)})
    workspace.path("tools/scan-image").chmod(0o755)
    assert Path.cwd() != workspace.root
    result = workspace.run("build")
    assert result.exit_code == 0, result.output
    assert len(scans(workspace.path("tools/scan-image"))) == 2
