"""Reports for CI: the JSON build report against its published schema, the plan as JSON and as a
GitHub Actions matrix, JUnit XML of a build, and the markdown step summary.

Builds run on the FakeExecutor; the CLI runs against it by replacing the engine connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import junitparser
import pytest

from orchestrator.cache.store import Store
from orchestrator.cli import build_run
from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.engine.local import Engine
from orchestrator.imagetest.checks import CheckKind, CheckResult
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.plan import Action, Plan, PlannedNode
from orchestrator.pipeline.run import Pipeline
from orchestrator.pipeline.summary import BuildSummary, NodeStatus
from orchestrator.registry.cache import RemoteCache
from orchestrator.report.json_report import report_data
from orchestrator.report.junit_build import build_suites, write_build_junit
from orchestrator.report.matrix import generations, github_matrix, matrix_line
from orchestrator.report.summary import ENV_VAR, build_markdown, image_tests_markdown, write_step_summary
from orchestrator.workspace.loading import load
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.workspaces import FAMILY_BASES, ScratchWorkspace

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference"
SCHEMA = json.loads((DOCS / "build-report.schema.json").read_text())
PYTHON = "//lang/python:company-python-base"


def validate(report: dict[str, Any]) -> None:
    jsonschema.validate(report, SCHEMA, cls=jsonschema.Draft202012Validator)


def run_build(
    ws: ScratchWorkspace,
    executor: FakeExecutor,
    *,
    cache_dir: Path | None = None,
    remote: RemoteCache | None = None,
    listener: Any = None,
    **options: Any,
) -> BuildSummary:
    loaded = load(ws.root)
    cache = cache_dir or ws.cache_dir
    with Store(cache) as store:
        build = Pipeline(loaded, store, cache, executor, BuildOptions(**options), listener, remote)
        return build.run(build.plan(loaded.graph.select([])))


def by_label(summary: BuildSummary) -> dict[str, NodeStatus]:
    return {str(r.node.label): r.status for r in summary.reports}


class InterruptAfterFirst:
    """A display whose user presses Ctrl-C as soon as the first node finishes."""

    def planned(self, plan: Plan) -> None:
        pass

    def started(self, node: Node) -> None:
        pass

    def step(self, node: Node, step: str) -> None:
        pass

    def push_started(self, node: Node) -> None:
        pass

    def push_finished(self, node: Node, *, pushed: bool) -> None:
        pass

    def finished(self, outcome: scheduler.Outcome[Node]) -> None:
        raise KeyboardInterrupt


# --- the JSON build report and its schema ---------------------------------------------------------


def test_report_of_a_successful_then_cached_build_validates(family: ScratchWorkspace) -> None:
    executor = FakeExecutor(write_logs=True)
    first = report_data(run_build(family, executor))
    validate(first)
    assert {n["status"] for n in first["nodes"]} == {"built"} and first["exit_code"] == 0
    again = report_data(run_build(family, executor))
    validate(again)
    assert {n["status"] for n in again["nodes"]} == {"cached"}


def test_report_of_a_failure_with_its_error_and_log_tail_validates(family: ScratchWorkspace) -> None:
    report = report_data(run_build(family, FakeExecutor(fail={PYTHON}, write_logs=True)))
    validate(report)
    assert report["exit_code"] == 1
    nodes = {n["label"]: n for n in report["nodes"]}
    failed = nodes[PYTHON]
    assert failed["status"] == "failed"
    assert "non-zero code" in failed["error"] and "make: *** [all] Error 2" in failed["log_tail"]
    assert Path(failed["log"]).is_file()
    assert nodes["//apps/api:api"]["status"] == "skipped"
    assert nodes["//apps/api:api"]["reason"] == f"skipped: {PYTHON} linux/amd64 failed"


def test_report_of_remote_cached_and_pulled_nodes_validates(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    run_build(family, FakeExecutor(registry=registry), cache_dir=tmp_path / "a", remote=RemoteCache(registry))
    family.write({"apps/api/app/main.py": "print('changed')\n"})
    summary = run_build(
        family, FakeExecutor(registry=registry), cache_dir=tmp_path / "b", remote=RemoteCache(registry), push=True
    )
    report = report_data(summary)
    validate(report)
    statuses = {n["status"] for n in report["nodes"]}
    assert statuses == {"built", "pulled", "remote-cached"}
    pulled = next(n for n in report["nodes"] if n["status"] == "pulled")
    assert pulled["log"] is None  # a pull has no build log: null, not ""
    assert report["pushed"]


def test_report_of_an_interrupted_build_validates(family: ScratchWorkspace) -> None:
    summary = run_build(family, FakeExecutor(), listener=InterruptAfterFirst(), jobs=1)
    report = report_data(summary)
    validate(report)
    assert report["exit_code"] == 130
    statuses = [n["status"] for n in report["nodes"]]
    assert statuses.count("built") == 1 and statuses.count("cancelled") == len(statuses) - 1


def test_an_undocumented_or_missing_field_fails_the_schema(family: ScratchWorkspace) -> None:
    report = report_data(run_build(family, FakeExecutor()))
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        validate({**report, "nodes": [{**report["nodes"][0], "surprise": 1}, *report["nodes"][1:]]})
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        validate({**report, "started_at": "now"})
    with pytest.raises(jsonschema.ValidationError, match="'log_tail' is a required property"):
        node = dict(report["nodes"][0])
        del node["log_tail"]
        validate({**report, "nodes": [node]})
    with pytest.raises(jsonschema.ValidationError):
        validate({**report, "nodes": [{**report["nodes"][0], "status": "exploded"}]})


def test_every_field_of_the_schema_is_documented() -> None:
    text = (DOCS / "report.md").read_text()
    fields = list(SCHEMA["properties"]) + list(SCHEMA["$defs"]["node"]["properties"])
    for field in fields:
        assert f"| `{field}` |" in text, f"{field} is not in docs/reference/report.md"
    for status in SCHEMA["$defs"]["status"]["enum"]:
        assert f"`{status}`" in text


# --- the plan as JSON and as a matrix (through the CLI) -------------------------------------------


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeExecutor]:
    """The CLI's build runs on a FakeExecutor instead of the Docker Engine."""
    executor = FakeExecutor(write_logs=True, bases=FAMILY_BASES)

    def connect(spec: object = None) -> Engine:
        return Engine(executor=executor, images=executor.references())

    monkeypatch.setattr(build_run, "connect", connect)
    yield executor


def test_dry_run_output_json_is_the_documented_plan(family: ScratchWorkspace) -> None:
    result = family.run("build", "--dry-run", "--output", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert set(plan) == {"version", "nodes", "summary"} and plan["version"] == 1
    assert plan["summary"] == {"nodes": 8, "build": 8, "cached": 0, "remote": 0, "pull": 0}
    nodes = {n["label"]: n for n in plan["nodes"]}
    assert set(nodes["//apps/web:web"]) == {
        "label",
        "platform",
        "key",
        "action",
        "reason",
        "pull",
        "image",
        "engine",
        "parents",
    }
    assert nodes["//apps/web:web"]["parents"] == [{"label": "//lang/node:company-node-base", "platform": "linux/amd64"}]
    assert nodes["//apps/web:web"]["image"] == f"web:key-{nodes['//apps/web:web']['key']}"
    assert nodes["//rootfs:debian"] == {**nodes["//rootfs:debian"], "action": "build", "pull": False, "parents": []}
    seen: set[str] = set()
    for node in plan["nodes"]:  # parents first
        assert all(parent["label"] in seen for parent in node["parents"])
        seen.add(node["label"])
    text = family.run("build", "--dry-run", "--output", "text")
    assert text.stdout == family.run("build", "--dry-run").stdout  # text stays the default


def test_dry_run_github_matrix_groups_generations_on_one_line(family: ScratchWorkspace) -> None:
    result = family.run("build", "--dry-run", "--output", "github-matrix")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    matrix = json.loads(result.stdout)
    assert matrix == {
        "include": [
            {
                "platform": "linux/amd64",
                "generation": 0,
                "targets": "//apps/static:static //rootfs:debian",
                "name": "linux/amd64 gen 0",
            },
            {
                "platform": "linux/amd64",
                "generation": 1,
                "targets": "//base:company-base //hardened:secure",
                "name": "linux/amd64 gen 1",
            },
            {
                "platform": "linux/amd64",
                "generation": 2,
                "targets": "//lang/node:company-node-base //lang/python:company-python-base",
                "name": "linux/amd64 gen 2",
            },
            {
                "platform": "linux/amd64",
                "generation": 3,
                "targets": "//apps/api:api //apps/web:web",
                "name": "linux/amd64 gen 3",
            },
        ]
    }


def test_matrix_leaves_out_what_the_engine_has(family: ScratchWorkspace, fake_engine: FakeExecutor) -> None:
    assert family.run("build", "//apps/static").exit_code == 0
    family.write({"base/motd": "changed\n"})
    matrix = json.loads(family.run("build", "--dry-run", "--output", "github-matrix").stdout)
    targets = " ".join(job["targets"] for job in matrix["include"])
    assert "//apps/static:static" not in targets and "//hardened:secure" in targets
    assert matrix["include"][0] == {
        "platform": "linux/amd64",
        "generation": 0,
        "targets": "//hardened:secure //rootfs:debian",
        "name": "linux/amd64 gen 0",
    }
    assert family.run("build").exit_code == 0
    nothing = family.run("build", "--dry-run", "--output", "github-matrix")
    assert nothing.stdout == '{"include": []}\n'


def test_the_build_command_closes_the_engine_it_connected(family: ScratchWorkspace, fake_engine: FakeExecutor) -> None:
    assert family.run("build", "//apps/static").exit_code == 0
    assert fake_engine.closed


@pytest.mark.parametrize("output", ["json", "github-matrix", "text"])
def test_output_without_dry_run_is_a_usage_error(family: ScratchWorkspace, output: str) -> None:
    result = family.run("build", "--output", output)
    assert result.exit_code == 2
    assert result.stderr.startswith("ERROR --output") and "--dry-run" in result.stderr


# --- the grouping itself --------------------------------------------------------------------------


def node(name: str, platform: str = "linux/amd64") -> Node:
    return Node(Label(name, name), platform)


def plan_of(actions: dict[Node, Action]) -> Plan:
    """A plan listing ``actions``' nodes in the given order (the caller lists parents first)."""
    planned = tuple(
        PlannedNode(node=n, key="0" * 32, image=f"{n.label.name}:key-0", action=a, reason="test", record=None)
        for n, a in actions.items()
    )
    return Plan(nodes=planned, selected=frozenset(n.label for n in actions))


def test_diamond_generations() -> None:
    a, b, c, d = (node(x) for x in "abcd")
    parents = {b: [a], c: [a], d: [b, c]}
    plan = plan_of(dict.fromkeys([a, b, c, d], Action.BUILD))
    assert generations(plan, parents) == {a: 0, b: 1, c: 1, d: 2}
    assert [(job["generation"], job["targets"]) for job in github_matrix(plan, parents)["include"]] == [
        (0, "//a:a"),
        (1, "//b:b //c:c"),
        (2, "//d:d"),
    ]


def test_cached_nodes_are_no_jobs_but_chains_through_them_count() -> None:
    a, b, c, d = (node(x) for x in "abcd")
    parents = {b: [a], c: [a], d: [b, c]}
    plan = plan_of({a: Action.BUILD, b: Action.CACHED, c: Action.REMOTE, d: Action.BUILD})
    assert generations(plan, parents) == {a: 0, d: 1}  # d waits for a, through its cached children
    only_leaf = plan_of({a: Action.CACHED, b: Action.CACHED, c: Action.REMOTE, d: Action.BUILD})
    assert github_matrix(only_leaf, parents) == {
        "include": [{"platform": "linux/amd64", "generation": 0, "targets": "//d:d", "name": "linux/amd64 gen 0"}]
    }


def test_several_platforms_are_separate_jobs_of_one_generation() -> None:
    base_amd, base_arm = node("base"), node("base", "linux/arm64")
    app_amd, app_arm = node("app"), node("app", "linux/arm64")
    tool_arm = node("tool", "linux/arm64")  # FROM --platform=linux/amd64 base: a parent on another platform
    parents = {app_amd: [base_amd], app_arm: [base_arm], tool_arm: [base_amd]}
    plan = plan_of(dict.fromkeys([base_amd, base_arm, app_amd, app_arm, tool_arm], Action.BUILD))
    assert github_matrix(plan, parents)["include"] == [
        {"platform": "linux/amd64", "generation": 0, "targets": "//base:base", "name": "linux/amd64 gen 0"},
        {"platform": "linux/arm64", "generation": 0, "targets": "//base:base", "name": "linux/arm64 gen 0"},
        {"platform": "linux/amd64", "generation": 1, "targets": "//app:app", "name": "linux/amd64 gen 1"},
        {"platform": "linux/arm64", "generation": 1, "targets": "//app:app //tool:tool", "name": "linux/arm64 gen 1"},
    ]


def test_empty_plan_is_an_empty_include() -> None:
    empty = plan_of({})
    assert github_matrix(empty, {}) == {"include": []}
    assert matrix_line(github_matrix(empty, {})) == '{"include": []}'
    all_cached = plan_of({node("a"): Action.CACHED})
    assert github_matrix(all_cached, {}) == {"include": []}


# --- JUnit XML of a build -------------------------------------------------------------------------


def read_junit(path: Path) -> junitparser.JUnitXml:
    return junitparser.JUnitXml.fromfile(str(path))


def test_build_junit_has_a_failure_skips_and_passing_cases(family: ScratchWorkspace, tmp_path: Path) -> None:
    summary = run_build(family, FakeExecutor(fail={PYTHON}, write_logs=True))
    path = tmp_path / "out" / "build.xml"
    write_build_junit(path, summary)
    xml = read_junit(path)
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (8, 1, 0, 1)
    (suite,) = list(xml)
    assert suite.name == "build linux/amd64"
    cases = {case.classname: case for case in suite}
    failed = cases[PYTHON]
    assert failed.name == "build" and failed.is_failure
    assert "non-zero code" in failed.result[0].message
    assert "make: *** [all] Error 2" in failed.result[0].text and "full log: " in failed.result[0].text
    skipped = cases["//apps/api:api"]
    assert skipped.is_skipped and skipped.result[0].message == f"skipped: {PYTHON} linux/amd64 failed"
    assert cases["//base:company-base"].is_passed and cases["//base:company-base"].name == "build"


def test_build_junit_cached_nodes_pass_in_no_time(family: ScratchWorkspace, tmp_path: Path) -> None:
    executor = FakeExecutor(default_duration=0.01)
    run_build(family, executor)
    write_build_junit(tmp_path / "b.xml", run_build(family, executor))
    xml = read_junit(tmp_path / "b.xml")
    assert (xml.tests, xml.failures, xml.skipped, xml.time) == (8, 0, 0, 0)
    assert {case.name for suite in xml for case in suite} == {"cached"}


def test_build_junit_one_suite_per_platform_with_pulls_and_remote_hits(
    family: ScratchWorkspace, tmp_path: Path
) -> None:
    family.write({"WORKSPACE": 'workspace(name = "family", platforms = ["linux/amd64", "linux/arm64"])\n'})
    registry = FakeRegistry()
    run_build(family, FakeExecutor(registry=registry), cache_dir=tmp_path / "a", remote=RemoteCache(registry))
    family.write({"apps/api/app/main.py": "print('changed')\n"})
    summary = run_build(family, FakeExecutor(registry=registry), cache_dir=tmp_path / "b", remote=RemoteCache(registry))
    suites = build_suites(summary)
    assert [s.name for s in suites] == ["build linux/amd64", "build linux/arm64"]
    names = {(c.classname, c.name) for c in suites[1].cases}
    assert (PYTHON, "pull") in names and ("//apps/api:api", "build") in names
    assert ("//base:company-base", "remote-cached") in names


def test_build_junit_of_an_interrupted_build_skips_the_cancelled(family: ScratchWorkspace, tmp_path: Path) -> None:
    summary = run_build(family, FakeExecutor(), listener=InterruptAfterFirst(), jobs=1)
    write_build_junit(tmp_path / "i.xml", summary)
    xml = read_junit(tmp_path / "i.xml")
    assert (xml.tests, xml.failures, xml.skipped) == (8, 0, 7)
    cancelled = next(case for suite in xml for case in suite if case.is_skipped)
    assert cancelled.result[0].message.startswith("cancelled: the build was interrupted")


def test_build_command_writes_junit_report_and_step_summary(
    family: ScratchWorkspace, fake_engine: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary_file = tmp_path / "step-summary.md"
    summary_file.write_text("# earlier step\n")
    monkeypatch.setenv(ENV_VAR, str(summary_file))
    family.write({"apps/static/Dockerfile": "FROM scratch\nCOPY main.c /\n"})
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    result = family.run("build", "//apps/static", "--junit", str(junit), "--report", str(report))
    assert result.exit_code == 0, result.output
    assert read_junit(junit).tests == 1
    validate(json.loads(report.read_text()))
    first = summary_file.read_text()
    assert first.startswith("# earlier step\n") and "## orchestrator build: ✅ succeeded" in first

    fake_engine._fail = {"//apps/static:static"}  # the next build of it fails
    family.write({"apps/static/main.c": "broken\n"})
    result = family.run("build", "//apps/static", "--junit", str(junit))
    assert result.exit_code == 1
    assert read_junit(junit).failures == 1
    text = summary_file.read_text()
    assert text.startswith(first)  # appended, not overwritten
    assert text.count("## orchestrator build") == 2 and "❌ failed (exit 1)" in text


def test_unwritable_step_summary_is_a_warning_not_a_failure(
    family: ScratchWorkspace, fake_engine: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))  # a directory: cannot be appended to
    family.write({"apps/static/Dockerfile": "FROM scratch\nCOPY main.c /\n"})
    result = family.run("build", "//apps/static")
    assert result.exit_code == 0, result.output
    assert f"WARNING cannot write the step summary to {tmp_path}" in result.stderr


# --- the markdown summary -------------------------------------------------------------------------


def test_build_markdown_lists_work_counts_cached_and_folds_the_log(family: ScratchWorkspace) -> None:
    executor = FakeExecutor(write_logs=True)
    run_build(family, executor)
    family.write({"lang/python/pip.conf": "[global]\ntimeout = 5\n"})
    failing = FakeExecutor(fail={PYTHON}, write_logs=True)
    failing.images, failing._references = executor.images, executor._references
    text = build_markdown(run_build(family, failing))
    assert text.startswith("## orchestrator build: ❌ failed (exit 1)\n")
    assert "**8 nodes**: 6 cached, 1 failed, 1 skipped" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{PYTHON}`", "| `//apps/api:api`"]  # cached: not listed
    assert "❌ failed" in rows[0] and "changed ctx pip.conf" in rows[0]
    assert "<details>\n<summary>❌ <code>//lang/python:company-python-base</code> linux/amd64: " in text
    assert "```text\nStep 1/1 : RUN make\nmake: *** [all] Error 2\n" in text
    assert text.count("<details>") == text.count("</details>") == 1


def test_markdown_escapes_tables_and_fences(family: ScratchWorkspace) -> None:
    summary = run_build(family, FakeExecutor(fail={PYTHON}))
    failed = next(r for r in summary.reports if r.status is NodeStatus.FAILED)
    from dataclasses import replace

    tricky = replace(failed, reason="a | b <script>", log_tail="```\nbreak out\n```")
    summary = replace(summary, reports=tuple(tricky if r is failed else r for r in summary.reports))
    text = build_markdown(summary)
    assert "a \\| b &lt;script&gt;" in text
    assert "````text\n```\nbreak out\n```\n````" in text


@dataclass(frozen=True)
class Run:
    """What image_tests_markdown reads of the test command's outcomes."""

    job: str
    results: Sequence[CheckResult] = ()
    cached: bool = False
    error: str | None = None


def check(name: str, message: str = "") -> CheckResult:
    return CheckResult(name=name, kind=CheckKind.COMMAND, passed=not message, message=message, duration_s=0.1)


def test_tests_markdown_lists_failed_checks_and_tests_that_did_not_run(family: ScratchWorkspace) -> None:
    runs = [
        Run(job="//app:app_test linux/amd64", results=[check("says hi"), check("metadata user", "user is 'root'")]),
        Run(job="//ok:ok_test linux/amd64", results=[check("fine")], cached=True),
        Run(job="//b:b_test linux/amd64", error="image //b:b linux/amd64 failed to build: boom"),
    ]
    build = run_build(family, FakeExecutor())
    text = image_tests_markdown(runs, 1, build)
    assert text.startswith("## orchestrator test: ❌ failed (exit 1)\n")
    assert "**3 test runs**: 1 passed, 1 failed, 1 could not run (1 cached); 2 checks passed, 1 failed" in text
    assert "| `//app:app_test linux/amd64` | metadata user | user is 'root' |" in text
    assert "- `//b:b_test linux/amd64`: image //b:b linux/amd64 failed to build: boom" in text
    assert "### images for the tests: ✅ succeeded" in text


def test_step_summary_is_appended_only_when_the_variable_names_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert not write_step_summary(lambda: "x", warn=warnings.append)
    target = tmp_path / "summary.md"
    monkeypatch.setenv(ENV_VAR, str(target))
    assert write_step_summary(lambda: "## one\n", warn=warnings.append)
    assert write_step_summary(lambda: "## two", warn=warnings.append)
    assert target.read_text() == "## one\n\n## two\n\n"

    def broken() -> str:
        raise RuntimeError("renderer bug")

    assert not write_step_summary(broken, warn=warnings.append)
    assert target.read_text() == "## one\n\n## two\n\n"
    assert warnings == [f"cannot write the step summary to {target} ($GITHUB_STEP_SUMMARY): renderer bug"]
