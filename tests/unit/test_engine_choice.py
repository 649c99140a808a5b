"""Choosing the engine to build on (step 11, in part): workspace(engines), --engine, transports, TLS."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import typer

from orchestrator.cli import build_run
from orchestrator.core.engines import (
    SEVERAL_ENGINES_NEED_A_REGISTRY,
    EngineSpec,
    choose_engines,
    home_engine,
    url_problem,
)
from orchestrator.engine.buildkit_probe import cli_environment
from orchestrator.engine.connection import EngineConnection, EngineError, client_kwargs, isolate_from_environment
from orchestrator.engine.local import Engine
from orchestrator.errors import UsageError
from orchestrator.workspace.buildfile.loader import load_settings
from tests.fakes.executor import FakeExecutor
from tests.workspaces import ScratchWorkspace

APP = {"app/BUILD": 'image(name = "app")\n', "app/Dockerfile": "FROM scratch\nCOPY hello /hello\n", "app/hello": "hi\n"}


def _tls_dir(root: Path, name: str = "certs") -> Path:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    for file in ("ca.pem", "cert.pem", "key.pem"):
        (directory / file).write_text("not checked here\n")
    return directory


# --- workspace(engines = [...]) -------------------------------------------------------------------


def test_workspace_engines_are_read_with_their_fields(workspace: ScratchWorkspace) -> None:
    tls = _tls_dir(workspace.root)
    workspace.write(
        {
            "WORKSPACE": "workspace(engines = [\n"
            '    {"url": "unix:///run/docker.sock", "jobs": 3, "platforms": ["amd64", "linux/386"]},\n'
            '    {"url": "tcp://10.0.0.5:2376", "tls": "certs"},\n'
            '    {"url": "ssh://builder@arm-box"},\n'
            "])\n"
        }
    )
    engines = load_settings(workspace.root).engines
    assert engines == (
        EngineSpec(url="unix:///run/docker.sock", jobs=3, platforms=("linux/amd64", "linux/386")),
        EngineSpec(url="tcp://10.0.0.5:2376", tls=str(tls)),
        EngineSpec(url="ssh://builder@arm-box"),
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('"tcp://h:2376"', "engines[0] must be a dict like"),
        ('{"url": "http://h:2376"}', "engines[0]: url: an engine URL starts with unix://, tcp://, ssh://"),
        ('{"jobs": 2}', "engines[0]: url must be a string"),
        ('{"url": "unix://run/docker.sock"}', "unix:// takes an absolute socket path"),
        ('{"url": "tcp://h"}', "tcp:// needs host:port"),
        ('{"url": "ssh://"}', "ssh:// needs a host"),
        ('{"url": "tcp://h:2376", "job": 2}', "unknown field 'job' (did you mean 'jobs'?)"),
        ('{"url": "tcp://h:2376", "jobs": 0}', "jobs must be a whole number of at least 1, got 0"),
        ('{"url": "tcp://h:2376", "jobs": True}', "jobs must be a whole number of at least 1, got True"),
        ('{"url": "tcp://h:2376", "platforms": ["linux/amd46"]}', "attribute 'platforms': unknown platform"),
        ('{"url": "tcp://h:2376", "platforms": "amd64"}', "platforms must be a list of strings"),
        ('{"url": "ssh://h", "tls": "certs"}', "tls goes with a tcp:// engine only"),
        ('{"url": "tcp://h:2376", "tls": "nowhere"}', "tls 'nowhere' is not a directory"),
        ('{"url": "tcp://h:2376", "tls": "half"}', "tls 'half' lacks cert.pem, key.pem"),
        ('{"url": "tcp://h:2376"}, {"url": "tcp://h:2376"}', "engines[1]: the engine tcp://h:2376 is listed twice"),
    ],
)
def test_a_bad_engines_entry_is_an_error_at_its_line(workspace: ScratchWorkspace, entry: str, message: str) -> None:
    _tls_dir(workspace.root)
    (workspace.root / "half").mkdir()
    (workspace.root / "half" / "ca.pem").write_text("x\n")
    workspace.write({"WORKSPACE": f"\nworkspace(\n    engines = [{entry}],\n)\n", **APP})
    result = workspace.run("query", "buildorder")
    assert result.exit_code == 2
    assert result.stderr.startswith("ERROR WORKSPACE:2:1: workspace(): engines["), result.stderr
    assert message in result.stderr


# --- --engine and the choice ----------------------------------------------------------------------


def test_the_command_line_replaces_the_workspace_list_and_borrows_its_entry() -> None:
    declared = (EngineSpec(url="tcp://a:2376", jobs=4, tls="/certs"), EngineSpec(url="unix:///b.sock"))
    assert choose_engines(["tcp://a:2376"], declared) == declared[:1]
    assert choose_engines(["unix:///c.sock"], declared) == (EngineSpec(url="unix:///c.sock"),)
    assert choose_engines(["unix:///c.sock", "tcp://a:2376", "unix:///c.sock"], declared) == (
        EngineSpec(url="unix:///c.sock"),
        declared[0],
    )
    assert choose_engines([], declared) == declared
    assert choose_engines([], ()) == ()
    assert home_engine([], declared) == declared[0]
    assert home_engine([], ()) is None
    with pytest.raises(UsageError, match="--engine: an engine URL starts with"):
        choose_engines(["unix:///c.sock", "localhost:2375"], declared)


def test_url_problems() -> None:
    assert url_problem("unix:///var/run/docker.sock") is None
    assert url_problem("tcp://127.0.0.1:2376") is None
    assert url_problem("tcp://[::1]:2376") is None
    assert url_problem("ssh://me@host:2222") is None
    assert url_problem("tcp://h:99999") is not None
    assert url_problem("npipe:////./pipe/docker_engine") is not None


@pytest.fixture
def chosen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[EngineSpec | None, int]]:
    """The engine spec the build connected with and its --jobs, per build (the build stops there)."""
    calls: list[tuple[EngineSpec | None, int]] = []
    executor = FakeExecutor()
    specs: list[EngineSpec | None] = []

    def connect(spec: EngineSpec | None = None) -> Engine:
        specs.append(spec)
        return Engine(executor=executor, images=executor.references(), spec=spec)

    def run_on_console(console: Any, *, request: Any, engine: Any, **kwargs: Any) -> Any:
        engine()
        calls.append((specs[-1], request.options.jobs))
        raise typer.Exit(0)

    monkeypatch.setattr(build_run, "connect", connect)
    monkeypatch.setattr(build_run, "run_on_console", run_on_console)
    return calls


def test_build_connects_to_the_engine_the_command_line_names(
    workspace: ScratchWorkspace, chosen: list[tuple[EngineSpec | None, int]]
) -> None:
    tls = _tls_dir(workspace.root)
    workspace.write(
        {
            "WORKSPACE": 'workspace(engines = [{"url": "unix:///w.sock", "jobs": 3},'
            ' {"url": "tcp://h:2376", "tls": "certs", "jobs": 5}])\n',
            **APP,
        }
    )
    assert workspace.run("build", "--engine", "tcp://h:2376").exit_code == 0
    assert workspace.run("--engine", "unix:///elsewhere.sock", "build", "-j", "2").exit_code == 0
    assert workspace.run("--engine", "tcp://x:1", "build", "--engine", "unix:///w.sock").exit_code == 0
    assert chosen == [
        (EngineSpec(url="tcp://h:2376", tls=str(tls), jobs=5), 5),  # the WORKSPACE entry of that URL
        (EngineSpec(url="unix:///elsewhere.sock"), 2),
        (EngineSpec(url="unix:///w.sock", jobs=3), 3),  # after the command wins
    ]


def test_build_uses_the_one_workspace_engine_and_its_jobs(
    workspace: ScratchWorkspace, chosen: list[tuple[EngineSpec | None, int]]
) -> None:
    workspace.write({"WORKSPACE": 'workspace(engines = [{"url": "tcp://h:2375", "jobs": 7}])\n', **APP})
    assert workspace.run("build").exit_code == 0
    assert workspace.run("build", "--jobs", "1").exit_code == 0
    assert chosen == [(EngineSpec(url="tcp://h:2375", jobs=7), 7), (EngineSpec(url="tcp://h:2375", jobs=7), 1)]


@pytest.mark.parametrize(
    ("args", "workspace_file"),
    [
        (("build", "--engine", "unix:///a.sock", "--engine", "unix:///b.sock"), ""),
        (("build", "--dry-run"), 'workspace(engines = [{"url": "unix:///a.sock"}, {"url": "unix:///b.sock"}])\n'),
        (
            ("build", "--engine", "unix:///a.sock", "--engine", "unix:///b.sock", "--no-remote-cache-write"),
            'workspace(registry = "127.0.0.1:1")\n',
        ),
    ],
)
def test_several_engines_without_a_writable_registry_cache_are_a_usage_error(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], workspace_file: str
) -> None:
    connected: list[str] = []

    def connect(spec: EngineSpec | None = None) -> Engine:
        assert spec is not None
        connected.append(spec.url)
        executor = FakeExecutor(url=spec.url)
        return Engine(executor=executor, images=executor.references(), spec=spec)

    monkeypatch.setattr(build_run, "connect", connect)
    workspace.write({"WORKSPACE": workspace_file, **APP})
    result = workspace.run(*args)
    assert result.exit_code == 2, result.output
    assert SEVERAL_ENGINES_NEED_A_REGISTRY in result.stderr
    assert result.stderr.startswith("ERROR 2 engines asked for, but ")
    assert sorted(connected) == ["unix:///a.sock", "unix:///b.sock"]


@pytest.mark.parametrize("command", [("lock",), ("gc", "--dry-run")])
def test_commands_that_use_one_engine_use_the_first(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    from orchestrator.cli import common

    asked: list[EngineSpec | None] = []
    real = common.home_engine

    def home(given: Any, declared: Any) -> EngineSpec | None:
        asked.append(real(given, declared))
        raise typer.Exit(0)

    monkeypatch.setattr(common, "home_engine", home)
    workspace.write(
        {"WORKSPACE": 'workspace(engines = [{"url": "unix:///a.sock"}, {"url": "unix:///b.sock"}])\n', **APP}
    )
    assert workspace.run(*command).exit_code == 0
    assert asked == [EngineSpec(url="unix:///a.sock")]


def test_a_bad_engine_url_is_a_usage_error(workspace: ScratchWorkspace) -> None:
    workspace.write(APP)
    result = workspace.run("build", "--engine", "http://h:2375")
    assert result.exit_code == 2
    assert "ERROR --engine: an engine URL starts with unix://, tcp://, ssh://" in result.stderr


# --- transports -----------------------------------------------------------------------------------


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    from tests.engines import make_certificates

    make_certificates(tmp_path / "tls")
    return tmp_path / "tls" / "client"


def test_the_tls_client_ignores_requests_ca_bundle(
    certificates: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker

    wrong = tmp_path / "wrong-bundle.pem"
    wrong.write_text((certificates.parent / "server" / "cert.pem").read_text())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(wrong))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(wrong))
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")  # the TLS directory replaces the environment's settings
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "elsewhere"))
    kwargs = client_kwargs("tcp://127.0.0.1:2376", str(certificates))
    tls = kwargs["tls"]
    assert (tls.ca_cert, tls.cert, tls.verify) == (
        str(certificates / "ca.pem"),
        (str(certificates / "cert.pem"), str(certificates / "key.pem")),
        True,
    )
    api = docker.APIClient(version="1.41", **kwargs)  # no request is made
    try:
        url = api._url("/_ping")
        assert url.startswith("https://127.0.0.1:2376/")
        # What requests would do by default: the environment's bundle replaces the engine's CA.
        assert api.merge_environment_settings(url, {}, None, None, None)["verify"] == str(wrong)
        isolate_from_environment(api)
        assert api.merge_environment_settings(url, {}, None, None, None)["verify"] == str(certificates / "ca.pem")
    finally:
        api.close()


def test_an_ssh_engine_uses_the_ssh_client() -> None:
    import docker

    kwargs = client_kwargs("ssh://builder@arm-box:2222", None)
    assert kwargs == {"base_url": "ssh://builder@arm-box:2222", "use_ssh_client": True}
    try:
        from docker.transport.sshconn import SSHHTTPAdapter
    except ImportError:  # the SDK's ssh transport imports paramiko even to run the ssh client
        with pytest.raises(EngineError, match=r"ssh:// transport needs the paramiko package"):
            EngineConnection("ssh://builder@arm-box:2222").ping()
        return
    api = docker.APIClient(version="1.41", **kwargs)  # the ssh client runs on the first request only
    try:
        adapter = api.get_adapter(api.base_url)
        assert isinstance(adapter, SSHHTTPAdapter)
        assert adapter.ssh_host == "builder@arm-box:2222"  # handed to `ssh` as given
    finally:
        api.close()


def test_the_buildkit_cli_reaches_a_tls_engine_with_its_directory() -> None:
    base = {"PATH": "/bin", "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": "/env/certs", "REQUESTS_CA_BUNDLE": "/x"}
    assert cli_environment("tcp://10.9.8.7:2376", base, tls_dir="/ws/certs") == {
        "PATH": "/bin",
        "DOCKER_HOST": "tcp://10.9.8.7:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/ws/certs",
    }
    # an engine without a TLS directory of its own: the environment's settings pass through
    assert cli_environment("tcp://10.9.8.6:2376", base)["DOCKER_CERT_PATH"] == "/env/certs"


def test_declared_platforms_are_the_engine_s_own_without_asking_it() -> None:
    connection = EngineConnection("tcp://192.0.2.1:2375", platforms=["arm64", "arm/v7"])
    assert connection.native_platform() == "linux/arm64"  # nothing listens at 192.0.2.1: not asked


def test_a_tls_connection_names_its_directory_when_it_fails(certificates: Path) -> None:
    from orchestrator.engine.api import DaemonUnavailable

    connection = EngineConnection("tcp://127.0.0.1:9", tls_dir=str(certificates), timeout=2)
    with pytest.raises(DaemonUnavailable) as failed:
        connection.ping()
    message = str(failed.value)
    assert message.startswith("cannot reach the Docker daemon at tcp://127.0.0.1:9: ")
    assert f"the certificates in {certificates} (ca.pem, cert.pem, key.pem)" in message
