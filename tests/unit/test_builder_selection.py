"""BuildKit or classic (step 10), everything outside the engine: choosing the builder once and only
when something is to be built, secrets and ssh from BUILD files, the planning errors, ``# syntax``
frontends, hermetic cache mounts, and report v2. Builds run on the FakeExecutor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import orchestrator.dockerfile as df
from orchestrator.cache.store import Store
from orchestrator.cli import build_run
from orchestrator.cli.common import Builder
from orchestrator.core.model import EXECUTOR_CHOICES
from orchestrator.engine.api import BUILDER_CHOICES, BuildKitUnavailable, Secret
from orchestrator.engine.local import Engine
from orchestrator.keys.hashing import keys_with_store
from orchestrator.pipeline.builder import BuilderError
from orchestrator.pipeline.hermetic import HermeticError
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.run import Pipeline
from orchestrator.pipeline.summary import BuildSummary, NodeStatus
from orchestrator.registry.cache import Notice
from orchestrator.report.json_report import report_data
from orchestrator.workspace.loading import load
from tests.fakes.executor import FakeExecutor
from tests.workspaces import ScratchWorkspace

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs/reference/build-report.schema.json").read_text())
CANARY = "canary-7f3a9c-never-anywhere"  # a secret's value: it must appear in no key, log, report or cache
APP = "//app:app"


def write_app(ws: ScratchWorkspace, build: str, dockerfile: str = "FROM scratch\nCOPY hello /hello\n") -> None:
    ws.write({"app/BUILD": build, "app/Dockerfile": dockerfile, "app/hello": "hi\n"})


def pipeline_build(
    ws: ScratchWorkspace,
    fake: FakeExecutor,
    *,
    warnings: list[Notice] | None = None,
    **options: Any,
) -> BuildSummary:
    loaded = load(ws.root)
    with Store(ws.cache_dir) as store:
        warn = (lambda notice: warnings.append(notice)) if warnings is not None else (lambda notice: None)
        build = Pipeline(loaded, store, ws.cache_dir, fake, BuildOptions(**options), warn=warn)
        return build.run(build.plan(loaded.graph.select([])))


def key_manifest(ws: ScratchWorkspace, label: str = APP) -> tuple[str, tuple[tuple[str, str], ...]]:
    loaded = load(ws.root)
    with Store(ws.cache_dir) as store:
        _, keys = keys_with_store(store, loaded, loaded.graph.topological_nodes(loaded.graph.nodes))
    found = next(k for k in keys if str(k.node.label) == label)
    return found.key, found.manifest


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeExecutor]:
    """The CLI's build runs on a FakeExecutor (BuildKit available unless a test says otherwise)."""
    executor = FakeExecutor(write_logs=True)

    def connect(spec: object = None) -> Engine:
        return Engine(executor=executor, images=executor.references())

    monkeypatch.setattr(build_run, "connect", connect)
    yield executor


# --- choosing the builder ---------------------------------------------------------------------------


def test_the_builder_choices_are_the_same_everywhere() -> None:
    assert EXECUTOR_CHOICES == BUILDER_CHOICES == tuple(b.value for b in Builder)


def test_auto_builds_with_buildkit_when_it_works(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n')
    executor = FakeExecutor()
    warnings: list[Notice] = []
    summary = pipeline_build(workspace, executor, warnings=warnings)
    assert summary.exit_code == 0
    assert executor.selections == ["auto"]
    assert warnings == []
    assert (summary.executor.requested, summary.executor.used) == ("auto", "buildkit")
    assert summary.executor.detail == FakeExecutor.BUILDKIT_DETAIL
    (report,) = summary.reports
    assert (report.builder, report.engine) == ("buildkit", "unix:///var/run/docker.sock")


def test_auto_falls_back_to_classic_with_one_warning(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n')
    workspace.write({"two/BUILD": 'image(name = "two")\n', "two/Dockerfile": "FROM scratch\n"})
    executor = FakeExecutor(buildkit=False)
    warnings: list[Notice] = []
    summary = pipeline_build(workspace, executor, warnings=warnings)
    assert summary.exit_code == 0 and len(executor.requests) == 2
    assert executor.selections == ["auto"]  # once, not per build
    assert [w.message for w in warnings] == [FakeExecutor.FALLBACK_WARNING]
    assert summary.executor.used == "classic"
    assert {r.builder for r in summary.reports} == {"classic"}


def test_the_fallback_warning_is_printed_once(workspace: ScratchWorkspace, fake_engine: FakeExecutor) -> None:
    fake_engine.buildkit = False
    write_app(workspace, 'image(name = "app")\n')
    workspace.write({"two/BUILD": 'image(name = "two")\n', "two/Dockerfile": "FROM scratch\n"})
    result = workspace.run("build")
    assert result.exit_code == 0, result.output
    assert result.stderr.count(f"WARNING {FakeExecutor.FALLBACK_WARNING}") == 1, result.stderr


def test_buildkit_asked_and_unavailable_exits_2_before_anything_is_built(
    workspace: ScratchWorkspace, fake_engine: FakeExecutor
) -> None:
    fake_engine.buildkit = False
    write_app(workspace, 'image(name = "app")\n')
    result = workspace.run("build", "--executor", "buildkit")
    assert result.exit_code == 2, result.output
    assert "ERROR --executor buildkit: the fake engine has no BuildKit" in result.stderr
    assert fake_engine.requests == [] and fake_engine.built == []


def test_buildkit_unavailable_raises_in_the_pipeline(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n')
    executor = FakeExecutor(buildkit=False)
    with pytest.raises(BuildKitUnavailable):
        pipeline_build(workspace, executor, executor="buildkit")
    assert executor.requests == []


def test_classic_asked_is_classic_without_a_warning(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n')
    executor = FakeExecutor()
    warnings: list[Notice] = []
    summary = pipeline_build(workspace, executor, warnings=warnings, executor="classic")
    assert executor.selections == ["classic"] and warnings == []
    assert summary.executor.used == "classic" and summary.reports[0].builder == "classic"


def test_workspace_executor_is_the_default_and_the_option_wins(workspace: ScratchWorkspace) -> None:
    workspace.write({"WORKSPACE": 'workspace(executor = "classic")\n'})
    write_app(workspace, 'image(name = "app")\n')
    executor = FakeExecutor()
    assert pipeline_build(workspace, executor).executor.requested == "classic"
    assert executor.selections == ["classic"]
    workspace.write({"app/hello": "changed\n"})
    assert pipeline_build(workspace, executor, executor="buildkit").executor.used == "buildkit"
    assert executor.selections == ["classic", "buildkit"]


def test_workspace_executor_is_checked_at_its_line(workspace: ScratchWorkspace) -> None:
    workspace.write({"WORKSPACE": '\nworkspace(\n    executor = "bildkit",\n)\n'})
    write_app(workspace, 'image(name = "app")\n')
    result = workspace.run("query", "buildorder")
    assert result.exit_code == 2
    assert result.stderr.startswith("ERROR WORKSPACE:2:1: workspace(): executor must be one of auto, buildkit, classic")
    assert "did you mean 'buildkit'?" in result.stderr


def test_an_unknown_executor_option_is_a_usage_error(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n')
    result = workspace.run("build", "--executor", "kaniko")
    assert result.exit_code == 2
    assert "--executor" in result.output


def test_a_cached_run_never_probes(workspace: ScratchWorkspace, fake_engine: FakeExecutor, tmp_path: Path) -> None:
    write_app(workspace, 'image(name = "app")\n')
    assert workspace.run("build").exit_code == 0
    assert fake_engine.selections == ["auto"]
    report = tmp_path / "report.json"
    result = workspace.run("-v", "build", "--executor", "buildkit", "--report", str(report))
    assert result.exit_code == 0, result.output
    assert fake_engine.selections == ["auto"]  # nothing to build: no probe, not even for --executor buildkit
    data = json.loads(report.read_text())
    jsonschema.validate(data, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert data["executor"] == {"requested": "buildkit", "used": None, "detail": None}
    assert [(n["status"], n["executor"], n["engine"]) for n in data["nodes"]] == [
        ("cached", None, "unix:///var/run/docker.sock")
    ]
    assert "builder: none (nothing to build; asked buildkit, not probed)" in result.stderr


def test_verbose_says_which_builder_built_and_how(workspace: ScratchWorkspace, fake_engine: FakeExecutor) -> None:
    write_app(workspace, 'image(name = "app")\n')
    result = workspace.run("-v", "build")
    assert result.exit_code == 0, result.output
    assert f"builder: buildkit ({FakeExecutor.BUILDKIT_DETAIL}; asked auto)" in result.stderr
    quiet = workspace.run("build", "--no-cache")
    assert "builder:" not in quiet.stderr


def test_keys_do_not_depend_on_the_executor(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n')
    classic = pipeline_build(workspace, FakeExecutor(), executor="classic")
    workspace.write({"WORKSPACE": 'workspace(executor = "buildkit")\n'})
    buildkit = pipeline_build(workspace, FakeExecutor())
    assert classic.reports[0].key == buildkit.reports[0].key
    assert buildkit.reports[0].status is NodeStatus.BUILT  # another engine: built again, same key


# --- report v2 --------------------------------------------------------------------------------------


def test_report_v2_names_the_builder_per_node_and_keeps_every_v1_field(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n')
    workspace.write({"bad/BUILD": 'image(name = "bad")\n', "bad/Dockerfile": "FROM scratch\n"})
    executor = FakeExecutor(fail={"//bad:bad"})
    data = report_data(pipeline_build(workspace, executor))
    jsonschema.validate(data, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert data["version"] == 2
    assert data["executor"] == {"requested": "auto", "used": "buildkit", "detail": FakeExecutor.BUILDKIT_DETAIL}
    nodes = {n["label"]: n for n in data["nodes"]}
    v1 = {"label", "platform", "key", "status", "duration_s", "image_id", "tags", "log", "reason", "error", "log_tail"}
    assert set(nodes[APP]) == v1 | {"executor", "engine"}
    assert (nodes[APP]["executor"], nodes[APP]["engine"]) == ("buildkit", "unix:///var/run/docker.sock")
    assert nodes["//bad:bad"]["status"] == "failed" and nodes["//bad:bad"]["executor"] == "buildkit"
    again = report_data(pipeline_build(workspace, executor))
    jsonschema.validate(again, SCHEMA, cls=jsonschema.Draft202012Validator)
    cached = {n["label"]: n for n in again["nodes"]}[APP]
    assert (cached["status"], cached["executor"], cached["engine"]) == ("cached", None, "unix:///var/run/docker.sock")


def test_the_schema_refuses_a_cached_node_with_a_builder(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n')
    executor = FakeExecutor()
    pipeline_build(workspace, executor)
    data = report_data(pipeline_build(workspace, executor))
    bad = {**data, "nodes": [{**data["nodes"][0], "executor": "buildkit"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA, cls=jsonschema.Draft202012Validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "version": 1}, SCHEMA, cls=jsonschema.Draft202012Validator)


# --- secrets and ssh ----------------------------------------------------------------------------------

SECRETS_BUILD = 'image(name = "app", secrets = {"token": "env:NPM_TOKEN", "cert": "file:certs/ca.pem"})\n'


def test_secrets_reach_the_request_as_places_never_values(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPM_TOKEN", CANARY)
    write_app(workspace, SECRETS_BUILD)
    workspace.write({"app/certs/ca.pem": CANARY})
    executor = FakeExecutor(write_logs=True)
    summary = pipeline_build(workspace, executor)
    assert summary.exit_code == 0
    (request,) = executor.requests
    ca = str(workspace.root / "app/certs/ca.pem")
    assert request.secrets == (Secret(id="cert", file=ca), Secret(id="token", env="NPM_TOKEN"))
    assert CANARY not in repr(request)
    assert "certs/ca.pem" not in {entry.path for entry in request.context}  # not in the context either


def test_secret_ids_enter_the_key_and_nothing_else_of_them(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_app(workspace, 'image(name = "app")\n')
    without, plain = key_manifest(workspace)
    monkeypatch.setenv("NPM_TOKEN", CANARY)
    write_app(workspace, SECRETS_BUILD)
    key, manifest = key_manifest(workspace)
    assert key != without
    assert dict(manifest)["secrets"] == "cert,token"
    assert "ssh" not in dict(manifest) and "secrets" not in dict(plain)  # nothing added without them
    text = json.dumps(manifest)
    assert CANARY not in text and "NPM_TOKEN" not in text and "ca.pem" not in text
    monkeypatch.setenv("NPM_TOKEN", "another value")
    write_app(workspace, SECRETS_BUILD.replace("NPM_TOKEN", "OTHER_TOKEN").replace("certs/", "other/"))
    assert key_manifest(workspace)[0] == key  # where the values are is not an input; the ids are
    write_app(workspace, 'image(name = "app", secrets = {"token": "env:NPM_TOKEN"}, ssh = ["default"])\n')
    key2, manifest2 = key_manifest(workspace)
    assert key2 != key and dict(manifest2)["secrets"] == "token" and dict(manifest2)["ssh"] == "default"


def test_a_secret_value_is_in_no_key_report_explain_or_cache(
    workspace: ScratchWorkspace, fake_engine: FakeExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NPM_TOKEN", CANARY)
    write_app(workspace, SECRETS_BUILD)
    workspace.write({"app/certs/ca.pem": CANARY})
    report = tmp_path / "report.json"
    built = workspace.run("-v", "build", "--report", str(report))
    assert built.exit_code == 0, built.output
    write_app(workspace, SECRETS_BUILD.replace('"cert"', '"extra": "env:NPM_TOKEN", "cert"'))
    explained = workspace.run("explain", APP)
    hashed = workspace.run("-v", "hash", APP)
    dry = workspace.run("build", "--dry-run", "--output", "json")
    for result in (built, explained, hashed, dry):
        assert CANARY not in result.output
    assert "secrets: cert,token -> cert,extra,token" in explained.output  # the ids are shown, not the values
    assert CANARY not in report.read_text()
    for path in workspace.cache_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ('{"token": "NPM_TOKEN"}', "secrets['token'] = 'NPM_TOKEN': a secret is \"env:NAME\""),
        ('{"token": "vault:x"}', 'a secret is "env:NAME" (an environment variable) or "file:path"'),
        ('{"token": "env:NPM-TOKEN"}', "'NPM-TOKEN' is not an environment variable name"),
        ('{"bad id": "env:X"}', "secrets['bad id']: a secret id is letters"),
        ('{"cert": "file:../../outside.pem"}', "resolves outside the workspace"),
    ],
)
def test_bad_secrets_are_located_in_the_build_file(workspace: ScratchWorkspace, secrets: str, message: str) -> None:
    write_app(workspace, f'\nimage(\n    name = "app",\n    secrets = {secrets},\n)\n')
    result = workspace.run("query", "buildorder")
    assert result.exit_code == 2
    assert result.stderr.startswith("ERROR app/BUILD:2:1: "), result.stderr
    assert message in result.stderr


def test_a_bad_ssh_id_is_located_in_the_build_file(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app", ssh = ["de fault"])\n')
    result = workspace.run("query", "buildorder")
    assert result.exit_code == 2
    assert result.stderr.startswith("ERROR app/BUILD:1:1: image(name='app'): ssh has 'de fault'"), result.stderr


def test_an_unset_secret_or_a_missing_file_stops_the_build_naming_the_fix(
    workspace: ScratchWorkspace, fake_engine: FakeExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NPM_TOKEN", raising=False)
    write_app(workspace, SECRETS_BUILD)
    result = workspace.run("build")
    assert result.exit_code == 2, result.output
    assert (
        "//app:app: secret 'token' is read from the environment variable NPM_TOKEN, which is not set" in result.stderr
    )
    assert "export NPM_TOKEN=..." in result.stderr
    assert "secret 'cert' is read from the file app/certs/ca.pem, which does not exist" in result.stderr
    assert "Nothing was built" in result.stderr
    assert fake_engine.requests == []


def test_a_cached_target_needs_no_secret(workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPM_TOKEN", CANARY)
    write_app(workspace, SECRETS_BUILD)
    workspace.write({"app/certs/ca.pem": "x"})
    executor = FakeExecutor()
    pipeline_build(workspace, executor)
    monkeypatch.delenv("NPM_TOKEN")
    (workspace.root / "app/certs/ca.pem").unlink()
    assert pipeline_build(workspace, executor).reports[0].status is NodeStatus.CACHED


@pytest.mark.parametrize(
    ("buildkit", "asked", "why"),
    [(True, "classic", "the executor asked is classic"), (False, "auto", "auto fell back to it")],
)
def test_secrets_or_ssh_with_the_classic_builder_stop_the_build(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch, buildkit: bool, asked: str, why: str
) -> None:
    monkeypatch.setenv("NPM_TOKEN", CANARY)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    write_app(workspace, 'image(name = "app", secrets = {"token": "env:NPM_TOKEN"}, ssh = ["default"])\n')
    executor = FakeExecutor(buildkit=buildkit)
    with pytest.raises(BuilderError) as raised:
        pipeline_build(workspace, executor, executor=asked)
    message = str(raised.value)
    assert "//app:app uses secrets token and ssh default, which only BuildKit can mount" in message
    assert why in message and "--executor buildkit" in message
    assert executor.requests == []


def test_ssh_is_forwarded_only_with_an_agent(workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    write_app(workspace, 'image(name = "app", ssh = ["default"])\n')
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    executor = FakeExecutor()
    with pytest.raises(
        BuilderError, match=r"//app:app forwards the ssh agent \(default\) and \$SSH_AUTH_SOCK is not set"
    ):
        pipeline_build(workspace, executor)
    assert executor.requests == []
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    assert pipeline_build(workspace, executor).exit_code == 0
    assert executor.requests[0].ssh == ("default",)


def test_secrets_and_ssh_survive_the_load_cache(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app", secrets = {"t": "env:T"}, ssh = ["default", "work"])\n')
    first = load(workspace.root, use_cache=True, cache_dir=str(workspace.cache_dir))
    again = load(workspace.root, use_cache=True, cache_dir=str(workspace.cache_dir))
    for loaded in (first, again):
        target = loaded.graph.targets[next(iter(loaded.graph.targets))]
        assert target.secrets == (("t", "env:T"),) and target.ssh == ("default", "work")  # type: ignore[union-attr]


# --- # syntax= frontends ------------------------------------------------------------------------------

SYNTAX = "# syntax=docker/dockerfile:1.7\nFROM scratch\nCOPY hello /hello\n"


def test_a_syntax_frontend_the_engine_lacks_stops_a_buildkit_build(
    workspace: ScratchWorkspace, fake_engine: FakeExecutor
) -> None:
    write_app(workspace, 'image(name = "app")\n', SYNTAX)
    result = workspace.run("build")
    assert result.exit_code == 2, result.output
    assert (
        "//app:app: app/Dockerfile starts with # syntax=docker/dockerfile:1.7, a BuildKit frontend the engine does "
        "not have: pull or import the frontend image docker/dockerfile:1.7 into the engine (docker pull/docker "
        "load), or remove the # syntax line"
    ) in result.stderr
    assert fake_engine.requests == []
    fake_engine.add_image("docker/dockerfile:1.7")
    assert workspace.run("build").exit_code == 0


def test_the_classic_builder_ignores_the_syntax_line(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app")\n', SYNTAX)
    assert pipeline_build(workspace, FakeExecutor(), executor="classic").exit_code == 0
    workspace.write({"app/hello": "changed\n"})
    assert pipeline_build(workspace, FakeExecutor(buildkit=False)).exit_code == 0  # auto fell back


@pytest.mark.parametrize(
    ("text", "frontend"),
    [
        ("# syntax=docker/dockerfile:1\nFROM scratch\n", "docker/dockerfile:1"),
        ("# escape=`\n#  SYNTAX = example.com/fe:2 \nFROM scratch\n", "example.com/fe:2"),
        ("\ufeff# syntax=fe\nFROM scratch\n", "fe"),
        ("# a comment\n# syntax=fe\nFROM scratch\n", None),
        ("FROM scratch\n# syntax=fe\n", None),
        ("FROM scratch\n", None),
    ],
)
def test_syntax_directive(text: str, frontend: str | None) -> None:
    assert df.syntax_directive(text) == frontend


# --- hermetic targets and cache mounts ----------------------------------------------------------------

CACHE_MOUNT = (
    "FROM scratch AS deps\nRUN --mount=type=cache,target=/root/.cache true\n"
    "FROM scratch AS final\nRUN --mount=type=bind,target=/x --mount=type=secret,id=t true\nCOPY hello /hello\n"
)


def test_a_hermetic_target_with_a_cache_mount_is_refused(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app", hermetic = True, srcs = ["hello"], target = "deps")\n', CACHE_MOUNT)
    executor = FakeExecutor()
    with pytest.raises(HermeticError, match=r"//app:app uses RUN --mount=type=cache \(app/Dockerfile:2\)") as raised:
        pipeline_build(workspace, executor)
    assert "remove the cache mount, or set hermetic = False" in str(raised.value)
    assert executor.requests == [] and executor.selections == []


def test_a_cache_mount_in_a_stage_not_built_or_a_target_not_hermetic_is_fine(workspace: ScratchWorkspace) -> None:
    write_app(workspace, 'image(name = "app", hermetic = True, srcs = ["hello"], target = "final")\n', CACHE_MOUNT)
    assert pipeline_build(workspace, FakeExecutor()).exit_code == 0
    write_app(workspace, 'image(name = "app", target = "deps")\n', CACHE_MOUNT)
    assert pipeline_build(workspace, FakeExecutor()).exit_code == 0


def test_run_mounts_of_the_needed_stages() -> None:
    mounts = df.run_mounts(CACHE_MOUNT, path="Dockerfile", build_args={}, target=None, platform="linux/amd64")
    assert [(m.type, m.line) for m in mounts] == [("bind", 4), ("secret", 4)]
    deps = df.run_mounts(CACHE_MOUNT, path="Dockerfile", build_args={}, target="deps", platform="linux/amd64")
    assert [(m.type, m.line) for m in deps] == [("cache", 2)]
    quoted = 'FROM scratch\nRUN --mount="type=cache,target=/a" --mount=target=/b,TYPE=tmpfs true\n'
    found = df.run_mounts(quoted, path="Dockerfile", build_args={}, target=None, platform=None)
    assert [m.type for m in found] == ["cache", "tmpfs"]


# --- the fake -------------------------------------------------------------------------------------------


def test_the_fake_records_choices_and_names_its_builder_in_results() -> None:
    fake = FakeExecutor(buildkit=False)
    assert fake.select_builder("classic").warning is None
    fallback = fake.select_builder("auto")
    assert (fallback.name, fallback.warning) == ("classic", FakeExecutor.FALLBACK_WARNING)
    with pytest.raises(BuildKitUnavailable):
        fake.select_builder("buildkit")
    assert fake.selections == ["classic", "auto", "buildkit"]
    assert FakeExecutor().select_builder("auto").name == "buildkit"
