"""The build pipeline (plan, schedule, record, promote) against the in-memory FakeExecutor."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.engine.api import BuildRequest
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.plan import Action
from orchestrator.pipeline.run import Pipeline
from orchestrator.pipeline.summary import BuildSummary, NodeStatus
from orchestrator.workspace.loading import load
from tests.fakes.executor import FakeExecutor
from tests.workspaces import ScratchWorkspace

ALL_BUILT_ORDER_PARENTS = [
    ("//rootfs:debian", "//base:company-base"),
    ("//base:company-base", "//lang/node:company-node-base"),
    ("//lang/node:company-node-base", "//apps/web:web"),
    ("//apps/static:static", "//hardened:secure"),
]


def run_build(ws: ScratchWorkspace, executor: FakeExecutor, *patterns: str, **options: object) -> BuildSummary:
    loaded = load(ws.root)
    with Store(ws.cache_dir) as store:
        build = Pipeline(loaded, store, ws.cache_dir, executor, BuildOptions(**options))  # type: ignore[arg-type]
        plan = build.plan(loaded.graph.select(list(patterns)))
        return build.run(plan)


def statuses(summary: BuildSummary) -> dict[str, NodeStatus]:
    return {str(r.node.label): r.status for r in summary.reports}


def test_everything_builds_parents_first_then_nothing(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    summary = run_build(family, executor)
    assert summary.exit_code == 0
    assert set(statuses(summary).values()) == {NodeStatus.BUILT}
    order = [str(r.node.label) for r in executor.requests]
    for parent, child in ALL_BUILT_ORDER_PARENTS:
        assert order.index(parent) < order.index(child)
    again = FakeExecutor()
    again.images, again._references = executor.images, executor._references
    summary = run_build(family, again)
    assert summary.exit_code == 0
    assert set(statuses(summary).values()) == {NodeStatus.CACHED}
    assert again.requests == []


def test_dockerfile_is_rebound_to_the_exact_parent_image(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    summary = run_build(family, executor)
    keys = {str(r.node.label): r.key for r in summary.reports}
    web = next(r for r in executor.requests if str(r.node.label) == "//apps/web:web")
    assert f"FROM company-node-base:key-{keys['//lang/node:company-node-base']} AS build" in web.dockerfile_text
    assert "FROM company-node-base\n" not in web.dockerfile_text
    secure = next(r for r in executor.requests if str(r.node.label) == "//hardened:secure")
    assert f"COPY --from=static:key-{keys['//apps/static:static']} /app /app" in secure.dockerfile_text
    labels = dict(web.labels)
    assert labels["org.orchestrator.key"] == keys["//apps/web:web"]
    assert labels["org.opencontainers.image.base.name"] == "company-node-base"
    assert not (family.root / "apps/web/Dockerfile").read_text().count("key-")  # the user's file untouched


def test_context_sent_is_the_hashed_file_set(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    run_build(family, executor)
    web = next(r for r in executor.requests if str(r.node.label) == "//apps/web:web")
    sent = {e.path for e in web.context}
    assert "src/index.js" in sent
    assert "debug.log" not in sent  # excluded by .dockerignore
    api = next(r for r in executor.requests if str(r.node.label) == "//apps/api:api")
    assert {e.path for e in api.context} == {"Dockerfile", "app/main.py"}  # srcs: declared files only


def test_failure_skips_descendants_and_keeps_the_human_tag(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    assert run_build(family, executor).exit_code == 0
    old_python = executor.inspect("company-python-base:latest")
    family.write({"lang/python/pip.conf": "[global]\ntimeout = 5\n", "apps/static/main.c": "int main(){return 1;}\n"})
    failing = FakeExecutor(fail={"//lang/python:company-python-base"})
    failing.images, failing._references = executor.images, executor._references
    summary = run_build(family, failing)
    assert summary.exit_code == 1
    got = statuses(summary)
    assert got["//lang/python:company-python-base"] is NodeStatus.FAILED
    assert got["//apps/api:api"] is NodeStatus.SKIPPED
    assert got["//apps/static:static"] is NodeStatus.BUILT  # an independent branch goes on
    assert failing.inspect("company-python-base:latest") == old_python  # human tag unmoved
    failed = next(r for r in summary.reports if r.status is NodeStatus.FAILED)
    with Store(family.cache_dir) as store:
        assert Records(store).get(failed.key) is None


def test_fail_fast_starts_nothing_after_a_failure(family: ScratchWorkspace) -> None:
    executor = FakeExecutor(fail={"//rootfs:debian"})
    summary = run_build(family, executor, jobs=1, keep_going=False)
    assert summary.exit_code == 1
    assert [str(r.node.label) for r in executor.requests] == ["//rootfs:debian"]  # the longest chain goes first
    assert sum(1 for s in statuses(summary).values() if s is NodeStatus.SKIPPED) == len(summary.reports) - 1


def test_removed_image_is_noticed_and_rebuilt(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    first = run_build(family, executor)
    static = next(r for r in first.reports if str(r.node.label) == "//apps/static:static")
    executor.remove(static.tags[0])
    executor.requests.clear()
    summary = run_build(family, executor)
    assert statuses(summary)["//apps/static:static"] is NodeStatus.BUILT
    assert statuses(summary)["//hardened:secure"] is NodeStatus.CACHED
    reason = next(r.reason for r in summary.reports if str(r.node.label) == "//apps/static:static")
    assert "gone from the engine" in reason


def test_plan_says_why_a_node_rebuilds(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    run_build(family, executor)
    family.write({"base/motd": "changed\n"})
    loaded = load(family.root)
    with Store(family.cache_dir) as store:
        plan = Pipeline(loaded, store, family.cache_dir, executor, BuildOptions()).plan(loaded.graph.select([]))
    reasons = {str(p.node.label): p.reason for p in plan.nodes if p.action is Action.BUILD}
    assert reasons["//base:company-base"] == "changed ctx motd"
    assert "changed parent company-base" in reasons["//lang/node:company-node-base"]
    assert "//apps/static:static" not in reasons


def test_jobs_bound_is_respected(family: ScratchWorkspace) -> None:
    executor = FakeExecutor(default_duration=0.02)
    run_build(family, executor, jobs=2)
    assert executor.max_running <= 2


def test_explain_lists_changed_entries(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    run_build(family, executor)
    assert "up to date" in family.run("explain", "//apps/web").stdout
    family.write({"apps/web/src/index.js": "console.log('changed')\n"})
    out = family.run("explain", "web").stdout
    assert "changed" in out
    assert "ctx src/index.js" in out


def test_human_tags_move_after_success(family: ScratchWorkspace, tmp_path: Path) -> None:
    executor = FakeExecutor()
    summary = run_build(family, executor, "//lang/...")
    assert "company-node-base:latest" in summary.promoted
    assert "company-base:latest" not in summary.promoted  # built as a dependency, not selected
    info = executor.inspect("company-node-base:latest")
    assert info is not None


def test_input_changed_during_the_build_records_nothing(family: ScratchWorkspace) -> None:
    source = family.path("apps/static/main.c")

    def edit_while_building(request: BuildRequest) -> bool:
        if str(request.node.label) == "//apps/static:static":
            source.write_text("int main(void) { return 42; }\n")
        return False  # the build itself succeeds

    executor = FakeExecutor(fail=edit_while_building)
    summary = run_build(family, executor, "//apps/static")
    assert summary.exit_code == 1
    report = next(r for r in summary.reports if str(r.node.label) == "//apps/static:static")
    assert report.status is NodeStatus.FAILED
    assert "changed during the build" in (report.error or "")
    with Store(family.cache_dir) as store:
        assert Records(store).get(report.key) is None
    assert run_build(family, FakeExecutor(), "//apps/static").exit_code == 0  # the next build converges


def test_plan_and_report_list_parents_before_children(family: ScratchWorkspace) -> None:
    summary = run_build(family, FakeExecutor())
    order = [str(r.node.label) for r in summary.reports]
    for parent, child in ALL_BUILT_ORDER_PARENTS:
        assert order.index(parent) < order.index(child)


def test_no_cache_builds_the_selected_nodes_again_and_their_parents_stay_cached(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    run_build(family, executor)
    executor.requests.clear()
    summary = run_build(family, executor, "//lang/node:company-node-base", no_cache=True)
    assert statuses(summary) == {
        "//rootfs:debian": NodeStatus.CACHED,
        "//base:company-base": NodeStatus.CACHED,
        "//lang/node:company-node-base": NodeStatus.BUILT,
    }
    (request,) = executor.requests
    assert request.no_cache  # without the engine's layer cache too
    assert next(p.reason for p in summary.plan.nodes if p.forced) == "--no-cache"


def test_a_record_is_distrusted_when_its_content_tag_names_another_image(family: ScratchWorkspace) -> None:
    executor = FakeExecutor()
    first = run_build(family, executor, "//apps/static")
    static = next(r for r in first.reports if str(r.node.label) == "//apps/static:static")
    # Another image under the content tag, even one carrying the key label, is not the recorded one.
    executor.add_image(static.tags[0], labels={"org.orchestrator.key": static.key, "other": "image"})
    summary = run_build(family, executor, "//apps/static")
    assert statuses(summary)["//apps/static:static"] is NodeStatus.BUILT
    reason = next(p.reason for p in summary.plan.nodes if str(p.node.label) == "//apps/static:static")
    assert "not the recorded" in reason


def test_a_lost_cache_trusts_content_tags_with_the_key_label_and_remakes_their_records(
    family: ScratchWorkspace, tmp_path: Path
) -> None:
    executor = FakeExecutor()
    first = run_build(family, executor)
    executor.requests.clear()
    lost = ScratchWorkspace(root=family.root, cache_dir=tmp_path / "new-cache")
    summary = run_build(lost, executor)
    assert set(statuses(summary).values()) == {NodeStatus.CACHED}
    assert executor.requests == []
    with Store(lost.cache_dir) as store:
        for report in first.reports:
            record = Records(store).get(report.key)
            assert record is not None
            assert record.image_id == report.image_id


def test_a_failed_build_leaves_no_content_tag(family: ScratchWorkspace) -> None:
    executor = FakeExecutor(fail={"//apps/static:static"})
    summary = run_build(family, executor, "//apps/static")
    report = next(r for r in summary.reports if str(r.node.label) == "//apps/static:static")
    assert report.status is NodeStatus.FAILED
    assert not [ref for ref in executor.references() if ref.startswith("static:key-")]


def test_dockerfile_edited_after_hashing_fails_with_input_changed(family: ScratchWorkspace) -> None:
    """The Dockerfile is read once, for the request, and must be what the key hashed."""
    family.write(
        {"apps/static/BUILD": 'image(name = "static", context = "src")\n', "apps/static/src/main.c": "int x;\n"}
    )
    loaded = load(family.root)
    executor = FakeExecutor()
    with Store(family.cache_dir) as store:
        build = Pipeline(loaded, store, family.cache_dir, executor, BuildOptions())
        plan = build.plan(loaded.graph.select(["//apps/static"]))
        dockerfile = family.path("apps/static/Dockerfile")  # outside the context "src"
        dockerfile.write_text(dockerfile.read_text().replace("-o /app", "-o /bin"))  # the same size
        summary = build.run(plan)
    report = next(r for r in summary.reports if str(r.node.label) == "//apps/static:static")
    assert report.status is NodeStatus.FAILED
    assert "an input changed after it was hashed" in (report.error or "")
    assert executor.built == []
    with Store(family.cache_dir) as store:
        assert Records(store).get(report.key) is None
