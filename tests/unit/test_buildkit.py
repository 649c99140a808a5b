"""BuildKit builds without a daemon: the CLI's arguments and environment, secrets, ssh, the progress
lines, images named by ID, the context directory, and how the probe decides."""

from __future__ import annotations

import io
import itertools
import json
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.engine.api import BuildKitUnavailable, BuildRequest, Secret
from orchestrator.engine.buildkit import (
    Workdir,
    _Refused,
    build_command,
    error_of,
    extract_context,
    image_id_references,
    rebind_image_ids,
    secret_sources,
    ssh_specs,
    step_of,
    sweep_workdirs,
    write_context,
)
from orchestrator.engine.buildkit_probe import (
    BuildKitProbe,
    BuildKitWay,
    candidate_clis,
    cli_environment,
    cli_host,
    failure_line,
    fallback_warning,
    probe,
    unavailable_message,
)
from orchestrator.engine.docker import DockerExecutor
from orchestrator.keys.context import context_entries

ID = "a" * 64
OTHER = "b" * 64
BUILTIN = BuildKitWay("/usr/bin/docker", "builtin")


def _request(**changes: object) -> BuildRequest:
    fields: dict[str, object] = {
        "node": Node(label=Label.parse("//app:web"), platform="linux/arm64"),
        "key": "k",
        "image": "web:key-k",
        "context": (),
        "dockerfile_path": ".orchestrator.Dockerfile",
        "dockerfile_text": "FROM scratch\n",
        "platform": "linux/arm64",
        "log_path": "/dev/null",
    }
    fields.update(changes)
    return BuildRequest(**fields)  # type: ignore[arg-type]


# --- the command --------------------------------------------------------------------------------


def test_a_plain_request_builds_for_its_platform_from_the_private_directory() -> None:
    work = Workdir(Path("/tmp/w"))
    assert build_command(BUILTIN, _request(), work, {}, []) == [
        "/usr/bin/docker",
        "build",
        "--progress",
        "plain",
        "--iidfile",
        "/tmp/w/iid",
        "--platform",
        "linux/arm64",
        "-f",
        "/tmp/w/Dockerfile",
        "/tmp/w/context",
    ]


def test_every_option_of_a_request_reaches_the_command() -> None:
    request = _request(
        build_args=(("A", "1"), ("B", "two words")),
        target="final",
        network_mode="none",
        no_cache=True,
    )
    work = Workdir(Path("/tmp/w"))
    command = build_command(
        BuildKitWay("/usr/libexec/docker", "buildx"),
        request,
        work,
        {"token": "/tmp/w/secrets/0", "cfg": "/etc/a,b"},
        ["default=/run/agent.sock"],
    )
    assert command[:4] == ["/usr/libexec/docker", "buildx", "build", "--load"]
    assert command[-3:] == ["-f", "/tmp/w/Dockerfile", "/tmp/w/context"]
    pairs = list(itertools.pairwise(command))
    assert ("--build-arg", "A=1") in pairs
    assert ("--build-arg", "B=two words") in pairs
    assert ("--target", "final") in pairs
    assert ("--network", "none") in pairs
    assert "--no-cache" in command
    assert ("--platform", "linux/arm64") in pairs
    assert ("--secret", "id=token,src=/tmp/w/secrets/0") in pairs
    assert ("--secret", 'id=cfg,"src=/etc/a,b"') in pairs  # CSV: a comma in a path is quoted
    assert ("--ssh", "default=/run/agent.sock") in pairs
    assert "--pull" not in command  # local bases are used as they are


def test_default_network_and_cache_add_nothing() -> None:
    command = build_command(BUILTIN, _request(network_mode="default"), Workdir(Path("/w")), {}, [])
    assert "--network" not in command and "--no-cache" not in command and "--target" not in command


def test_secret_from_env_is_written_to_a_private_file_and_one_from_a_file_is_used_in_place(tmp_path: Path) -> None:
    work = Workdir(tmp_path)
    own = tmp_path / "own-secret"
    own.write_text("file-value")
    request = _request(secrets=(Secret(id="token", env="TOKEN"), Secret(id="cfg", file=str(own))))
    sources = secret_sources(request, work, {"TOKEN": "env-value"})
    assert sources["cfg"] == str(own)
    written = Path(sources["token"])
    assert written.parent == work.secrets
    assert written.read_text() == "env-value"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE(work.secrets.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (Secret(id="t", env="UNSET"), "the environment variable UNSET is not set"),
        (Secret(id="t", file="/nonexistent/secret"), "the file /nonexistent/secret does not exist"),
        (Secret(id="a,b", env="TOKEN"), "secret id 'a,b'"),
        (Secret(id="t"), "exactly one of env and file"),
    ],
)
def test_a_secret_that_cannot_be_given_is_refused(tmp_path: Path, secret: Secret, message: str) -> None:
    with pytest.raises(_Refused, match=message):
        secret_sources(_request(secrets=(secret,)), Workdir(tmp_path), {"TOKEN": "x"})


def test_ssh_ids_forward_the_agent_named_explicitly() -> None:
    request = _request(ssh=("default", "deploy=/home/me/.ssh/id_ed25519"))
    assert ssh_specs(request, {"SSH_AUTH_SOCK": "/run/agent"}) == [
        "default=/run/agent",
        "deploy=/home/me/.ssh/id_ed25519",
    ]
    with pytest.raises(_Refused, match="SSH_AUTH_SOCK is not set"):
        ssh_specs(_request(ssh=("default",)), {})


def test_the_cli_environment_is_small_and_points_at_the_engine() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "DOCKER_CONFIG": "/cfg",
        "TOKEN": "secret-value",
        "DOCKER_CONTEXT": "other",
        "DOCKER_HOST": "tcp://elsewhere:2375",
    }
    env = cli_environment("unix:///var/run/docker.sock", base)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "DOCKER_CONFIG": "/cfg",
        "DOCKER_HOST": "unix:///var/run/docker.sock",
    }
    assert BUILTIN.environment("unix:///s", base)["DOCKER_BUILDKIT"] == "1"
    tls = cli_environment("tcp://h:2376", {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs"})
    assert (tls["DOCKER_TLS_VERIFY"], tls["DOCKER_CERT_PATH"], tls["DOCKER_HOST"]) == ("1", "/certs", "tcp://h:2376")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("http+unix:///run/d.sock", "unix:///run/d.sock"),
        ("http://127.0.0.1:2375", "tcp://127.0.0.1:2375"),
        ("tcp://h:2376", "tcp://h:2376"),
        ("/run/docker.sock", "unix:///run/docker.sock"),
    ],
)
def test_engine_urls_become_docker_host(url: str, host: str) -> None:
    assert cli_host(url) == host


# --- progress and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "step"),
    [
        ("#7 [stage-1 2/4] RUN make", (7, "[stage-1 2/4] RUN make")),
        ("#4 [1/2] FROM docker.io/library/busybox:latest", (4, "[1/2] FROM docker.io/library/busybox:latest")),
        ("#12 [builder 3/3] COPY --from=a /a /a  ", (12, "[builder 3/3] COPY --from=a /a /a")),
        ("#1 [internal] load build definition from Dockerfile", None),
        ("#7 0.412 [1/2] not a step: output", None),
        ("#7 DONE 0.3s", None),
        ("#6 exporting to image", None),
    ],
)
def test_step_lines_are_found(line: str, step: tuple[int, str] | None) -> None:
    assert step_of(line) == step


def test_the_final_error_line_is_the_message() -> None:
    lines = [
        "#5 [2/2] RUN false",
        "#5 ERROR: executor failed running [/bin/sh -c false]: exit code: 1",
        "------",
        "error: failed to solve: rpc error: code = Unknown desc = executor failed running [/bin/sh -c false]: "
        "exit code: 1",
    ]
    assert error_of(lines) == "failed to solve: executor failed running [/bin/sh -c false]: exit code: 1"
    assert error_of(lines[:2]) == "executor failed running [/bin/sh -c false]: exit code: 1"
    assert error_of(["#1 DONE"]) is None
    assert error_of(["ERROR: failed to solve: process did not complete successfully: exit code: 2"]) == (
        "failed to solve: process did not complete successfully: exit code: 2"
    )


# --- images named by ID ------------------------------------------------------------------------


def test_image_ids_in_from_copy_and_mount_are_found_and_rebound_to_local_tags() -> None:
    text = (
        f"FROM sha256:{ID} AS build\n"
        "RUN make\n"
        f"FROM busybox@sha256:{OTHER}\n"
        "COPY --from=build /out /out\n"
        f"COPY --from=sha256:{OTHER} /etc/x /x\n"
        f"RUN --mount=type=bind,from=sha256:{ID},target=/src cp /src/a /a\n"
    )
    references = image_id_references(text, path="Dockerfile")
    assert references == {1: ID, 5: OTHER, 6: ID}  # the digest of busybox@ and the stage name stay
    rebound = rebind_image_ids(text, references, path="Dockerfile").split("\n")
    assert rebound[0] == f"FROM orchestrator-pinned:{ID} AS build"
    assert rebound[2] == f"FROM busybox@sha256:{OTHER}"
    assert rebound[3] == "COPY --from=build /out /out"
    assert rebound[4] == f"COPY --from=orchestrator-pinned:{OTHER} /etc/x /x"
    assert rebound[5] == f"RUN --mount=type=bind,from=orchestrator-pinned:{ID},target=/src cp /src/a /a"


def test_a_dockerfile_without_image_ids_is_sent_as_it_is() -> None:
    text = "FROM busybox:latest\nRUN true\n"
    assert rebind_image_ids(text, image_id_references(text, path="Dockerfile"), path="Dockerfile") == text


# --- the context directory ---------------------------------------------------------------------


def test_the_context_directory_holds_exactly_the_entries(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "a.txt").write_text("a")
    (ctx / "run.sh").write_text("#!/bin/sh\n")
    (ctx / "run.sh").chmod(0o700)
    (ctx / "sub/b.txt").write_text("b")
    (ctx / "link").symlink_to("/etc/passwd")
    request = _request(context=context_entries(ctx, Path("Dockerfile"), workspace_root=tmp_path))
    work = Workdir(tmp_path / "work")
    work.root.mkdir()
    write_context(request, work)
    found = sorted(str(p.relative_to(work.context)) for p in work.context.rglob("*"))
    assert found == ["Dockerfile", "a.txt", "link", "run.sh", "sub", "sub/b.txt"]  # no .dockerignore, no rebound file
    assert os.readlink(work.context / "link") == "/etc/passwd"
    assert stat.S_IMODE((work.context / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((work.context / "a.txt").stat().st_mode) == 0o644
    assert (work.context / "sub/b.txt").stat().st_mtime == 0
    assert os.lstat(work.context / "link").st_mtime == 0
    assert not (work.root / "context.tar").exists()


@pytest.mark.parametrize("name", ["/etc/x", "../x", "a/../../x", "./a"])
def test_extracting_refuses_paths_outside_the_context(tmp_path: Path, name: str) -> None:
    tar_path = tmp_path / "c.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="not a plain path"):
        extract_context(tar_path, tmp_path / "out")


def test_extracting_refuses_to_write_through_a_link(tmp_path: Path) -> None:
    tar_path = tmp_path / "c.tar"
    with tarfile.open(tar_path, "w") as tar:
        link = tarfile.TarInfo("d")
        link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
        tar.addfile(link)
        info = tarfile.TarInfo("d/escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="no directory 'd'"):
        extract_context(tar_path, tmp_path / "out")
    assert not (tmp_path / "escaped").exists()


# --- the probe and the choice ------------------------------------------------------------------


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_candidates_are_the_cli_on_path_and_the_system_one_once_each(tmp_path: Path) -> None:
    real = _script(tmp_path / "docker", "exit 0\n")
    (tmp_path / "alias").symlink_to(real)
    assert candidate_clis(lambda _: str(tmp_path / "alias"), real) == (str(tmp_path / "alias"),)
    assert candidate_clis(lambda _: None, real) == (real,)
    assert candidate_clis(lambda _: None, str(tmp_path / "missing")) == ()


def test_the_probe_takes_the_first_cli_that_builds_and_says_why_the_others_did_not(tmp_path: Path) -> None:
    refusing = _script(
        tmp_path / "new-docker",
        'echo "ERROR: BuildKit is enabled but the buildx component is missing or broken." >&2\nexit 1\n',
    )
    building = _script(
        tmp_path / "old-docker",
        '[ "$1" = buildx ] && exit 1\n'
        'test "$DOCKER_BUILDKIT" = 1 || exit 3\n'
        'while [ $# -gt 0 ]; do [ "$1" = --iidfile ] && echo sha256:probe > "$2"; shift; done\n',
    )
    removed: list[str] = []
    found = probe([refusing, building], "unix:///var/run/docker.sock", removed.append)
    assert found.way == BuildKitWay(building, "builtin")
    assert found.way.detail == f"{building} build with DOCKER_BUILDKIT=1"
    assert found.reasons == (f"{refusing}: BuildKit is enabled but the buildx component is missing or broken",)
    assert removed == ["sha256:probe"]
    nothing = probe([refusing], "unix:///var/run/docker.sock", removed.append)
    assert nothing.way is None and len(nothing.reasons) == 1


def test_a_cli_with_buildx_builds_through_buildx(tmp_path: Path) -> None:
    cli = _script(
        tmp_path / "docker",
        '[ "$1 $2" = "buildx version" ] && exit 0\n'
        '[ "$1 $2 $3" = "buildx build --load" ] || exit 1\n'
        'while [ $# -gt 0 ]; do [ "$1" = --iidfile ] && echo sha256:probe > "$2"; shift; done\n',
    )
    found = probe([cli], "unix:///s", lambda _: None)
    assert found.way == BuildKitWay(cli, "buildx")
    assert found.way.detail == f"{cli} buildx build --load"


def test_the_probe_runs_once_however_many_threads_ask() -> None:
    calls: list[int] = []

    def candidates() -> tuple[str, ...]:
        calls.append(1)
        return ()

    probe_once = BuildKitProbe(lambda: "unix:///s", lambda _: None, candidates)
    threads = [threading.Thread(target=probe_once.result) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert probe_once.result().way is None


def test_failure_lines() -> None:
    assert failure_line("ERROR: BuildKit is enabled but broken.\n  Install it\n") == "BuildKit is enabled but broken"
    assert failure_line("something\nlast words\n") == "last words"
    assert failure_line("") == ""


def test_the_unavailable_message_names_every_candidate_and_the_ways_out() -> None:
    message = unavailable_message(["/usr/local/bin/docker: BuildKit is enabled but the buildx component is missing"])
    assert message == (
        "--executor buildkit: no way to BuildKit works here: /usr/local/bin/docker: BuildKit is enabled but the "
        "buildx component is missing; install docker-buildx, or a docker CLI that honours DOCKER_BUILDKIT=1 "
        "(docker.io 20.10's /usr/bin/docker), or use --executor classic"
    )
    assert "no docker CLI found" in unavailable_message([])
    assert "classic builder" in fallback_warning(["x: y"]) and "x: y" in fallback_warning(["x: y"])


def test_select_builder_probes_only_when_buildkit_may_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    executor = DockerExecutor(base_url="unix:///nonexistent.sock")
    calls: list[int] = []

    def candidates() -> tuple[str, ...]:
        calls.append(1)
        return ()

    executor.buildkit_probe.candidates = candidates
    classic = executor.select_builder("classic")
    assert (classic.name, classic.warning) == ("classic", None)
    assert calls == []  # classic, or no call at all: no probe
    monkeypatch.setattr(executor, "ping", lambda: None)
    with pytest.raises(BuildKitUnavailable, match="no docker CLI found") as caught:
        executor.select_builder("buildkit")
    assert caught.value.exit_code == 2
    auto = executor.select_builder("auto")
    assert auto.name == "classic" and auto.warning is not None
    assert calls == [1]
    with pytest.raises(ValueError, match="unknown builder"):
        executor.select_builder("kaniko")


def test_extracting_makes_the_directories_a_tar_of_declared_files_leaves_out(tmp_path: Path) -> None:
    """``srcs = glob(["app/**"])`` sends files without their directories; Docker makes them, 0755."""
    tar_path = tmp_path / "c.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("app/pkg/main.py")
        info.size, info.mode = 1, 0o644
        tar.addfile(info, io.BytesIO(b"x"))
    extract_context(tar_path, tmp_path / "out")
    assert (tmp_path / "out/app/pkg/main.py").read_bytes() == b"x"
    assert [oct((tmp_path / "out" / d).stat().st_mode & 0o777) for d in ("app", "app/pkg")] == ["0o755", "0o755"]


def test_a_kept_probe_answers_later_runs_until_the_engine_or_a_cli_changes(tmp_path: Path) -> None:
    """The probe builds an image (~0.4 s): its answer is kept in the cache for the next run."""
    builds = tmp_path / "builds"
    cli = _script(
        tmp_path / "docker",
        '[ "$1" = buildx ] && exit 1\n'
        f"echo x >> {builds}\n"
        'while [ $# -gt 0 ]; do [ "$1" = --iidfile ] && echo sha256:probe > "$2"; shift; done\n',
    )
    memo = tmp_path / "cache" / "buildkit-probe.json"
    engine = ["engine-1 20.10.24"]

    def run_probe() -> BuildKitWay | None:
        one_run = BuildKitProbe(lambda: "unix:///s", lambda _: None, lambda: (cli,), identity=lambda: engine[0])
        one_run.remember_in(memo)
        return one_run.result().way

    assert run_probe() == BuildKitWay(cli, "builtin")
    assert run_probe() == BuildKitWay(cli, "builtin")
    assert builds.read_text().count("x") == 1  # the second run was answered from the memo
    engine[0] = "engine-2 20.10.24"  # another engine: probed again
    assert run_probe() == BuildKitWay(cli, "builtin")
    assert builds.read_text().count("x") == 2
    Path(cli).write_text(Path(cli).read_text() + "# upgraded\n")  # the CLI changed: probed again
    assert run_probe() == BuildKitWay(cli, "builtin")
    assert builds.read_text().count("x") == 3
    memo.write_text("{not json")  # damaged: probed again, and kept anew
    assert run_probe() == BuildKitWay(cli, "builtin")
    assert builds.read_text().count("x") == 4
    assert json.loads(memo.read_text())["way"] == {"cli": cli, "kind": "builtin"}


def test_a_build_directory_a_killed_orchestrator_left_is_swept(tmp_path: Path) -> None:
    """It may hold secret files: the next build removes it; a running process's stays."""
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    left = tmp_path / f"orchestrator-buildkit-{gone.pid}-abc"
    (left / "secrets").mkdir(parents=True)
    (left / "secrets" / "token").write_text("canary")
    ours = tmp_path / f"orchestrator-buildkit-{os.getpid()}-def"
    ours.mkdir()
    other = tmp_path / "orchestrator-buildkit-notapid-x"
    other.mkdir()
    assert sweep_workdirs(str(tmp_path)) == [left]
    assert not left.exists() and ours.exists() and other.exists()
