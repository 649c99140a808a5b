"""Building on several engines (step 11): placement, transfers through the registry cache, per-engine
records, an engine going down — against FakeExecutors sharing a FakeRegistry."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.core.engines import EngineSpec
from orchestrator.core.model import Node
from orchestrator.engine.api import KEY_LABEL, BuildRequest
from orchestrator.engine.local import Engine, Engines
from orchestrator.errors import UsageError
from orchestrator.pipeline.fleet import check_several
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.placement import Slots, able, choose, simulate
from orchestrator.pipeline.plan import Action, Plan
from orchestrator.pipeline.run import Pipeline
from orchestrator.pipeline.summary import BuildSummary, NodeStatus
from orchestrator.registry.cache import RemoteCache
from orchestrator.workspace.loading import load
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.workspaces import ScratchWorkspace

A, B, C = "tcp://a:2376", "tcp://b:2376", "tcp://c:2376"


def engines(*executors: FakeExecutor, platforms: dict[str, tuple[str, ...]] | None = None, jobs: int = 1) -> Engines:
    specs = {e.url: EngineSpec(url=e.url, jobs=jobs, platforms=(platforms or {}).get(e.url, ())) for e in executors}
    return Engines(connected=tuple(Engine(executor=e, images=e.references(), spec=specs[e.url]) for e in executors))


def pipeline(
    ws: ScratchWorkspace, connected: Engines, registry: FakeRegistry | None, cache_dir: Path, **options: object
) -> tuple[Pipeline, Plan]:
    loaded = load(ws.root)
    remote = RemoteCache(registry) if registry is not None else None
    build = Pipeline(loaded, Store(cache_dir), cache_dir, None, BuildOptions(**options), remote=remote)  # type: ignore[arg-type]
    build.use_engines(connected)
    return build, build.plan(loaded.graph.select([]))


def run(ws: ScratchWorkspace, connected: Engines, registry: FakeRegistry | None, cache_dir: Path) -> BuildSummary:
    build, plan = pipeline(ws, connected, registry, cache_dir)
    try:
        return build.run(plan)
    finally:
        build.store.close()


def built_on(summary: BuildSummary) -> dict[Node, str | None]:
    return {r.node: r.engine for r in summary.reports if r.status is NodeStatus.BUILT}


def test_a_family_builds_across_two_engines_each_key_once(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    a, b = FakeExecutor(url=A, registry=registry, default_duration=0.05), FakeExecutor(url=B, registry=registry)
    summary = run(family, engines(a, b), registry, tmp_path / "cache")
    assert summary.exit_code == 0, summary.reports
    keys = [r.key for r in a.requests + b.requests]
    assert sorted(keys) == sorted(r.key for r in summary.reports)  # every key built, each once
    assert a.requests and b.requests  # both engines worked
    where = built_on(summary)
    assert set(where.values()) == {A, B}
    with Store(tmp_path / "cache") as store:
        for report in summary.reports:  # the record is on the engine that built it, with its image ID there
            record = Records(store).on(report.engine).get(report.key)
            assert record is not None and record.image_id == report.image_id
            other = B if report.engine == A else A
            holder = a if report.engine == A else b
            assert holder.inspect(report.tags[0]) is not None  # the content tag is on that engine
            if Records(store).on(other).get(report.key) is not None:  # fetched there for a child: by digest
                fetched = b if other == B else a
                assert any(
                    "@sha256:" in ref and ref.split("@")[0].endswith(report.tags[0].split(":")[0])
                    for ref in fetched.pulled
                )


def test_a_child_on_another_engine_gets_its_parent_by_digest_once(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    # b takes only arm64, a only amd64 (declared natively; neither emulates): every arm64 node is on b
    a, b = FakeExecutor(url=A, registry=registry), FakeExecutor(url=B, registry=registry, native="linux/arm64")
    family.write({"WORKSPACE": 'workspace(name = "family", platforms = ["linux/amd64", "linux/arm64"])\n'})
    connected = engines(a, b, platforms={A: ("linux/amd64",), B: ("linux/arm64",)})
    build, plan = pipeline(family, connected, registry, tmp_path / "cache")
    for member in build.fleet.members:
        member.emulates = frozenset()
    summary = build.run(plan)
    build.store.close()
    assert summary.exit_code == 0
    for node, url in built_on(summary).items():
        assert url == (B if node.platform == "linux/arm64" else A), node
    assert a.pulled == [] and b.pulled == []  # each platform's family stayed on its engine


def slots(url: str, *, jobs: int = 1, running: int = 0, native: str = "linux/amd64", emulates: bool = True) -> Slots:
    return Slots(
        url=url, jobs=jobs, running=running, native=frozenset({native}), emulates=None if emulates else frozenset()
    )


def test_placement_prefers_native_then_parents_then_the_least_loaded() -> None:
    amd, arm = slots(A), slots(B, native="linux/arm64")
    assert choose("linux/arm64", [amd, arm], {}) == B  # native first
    assert choose("linux/arm64", [amd, arm], {A: 2}) == B  # even over the engine holding its parents
    assert choose("linux/arm64", [amd, slots(B, native="linux/arm64", running=1)], {}) == A  # busy: emulated
    assert choose("linux/arm64", [amd, slots(B, native="linux/arm64", running=1)], {}) == A
    assert choose("linux/amd64", [slots(A, jobs=2), slots(C, jobs=2)], {C: 1}) == C  # holds its parent
    assert choose("linux/amd64", [slots(A, jobs=2, running=1), slots(C, jobs=2)], {}) == C  # least loaded
    assert choose("linux/amd64", [slots(A, jobs=4, running=1), slots(C, jobs=2, running=1)], {}) == A  # by ratio
    assert choose("linux/amd64", [slots(A), slots(C)], {}) == A  # then the first declared
    assert choose("linux/amd64", [slots(A, running=1), slots(C, running=1)], {}) is None  # no free slot
    no_qemu = slots(A, emulates=False)
    assert choose("linux/arm64", [no_qemu], {}) is None and able("linux/arm64", [no_qemu]) == []


def test_simulated_placement_follows_the_same_rule() -> None:
    parents = {"b1": ["a"], "b2": ["a"], "c": ["b2"]}
    where = simulate(
        ["a", "b1", "b2", "c"],
        parents,
        lambda n: "linux/amd64",
        {"a": 1, "b1": 5, "b2": 1, "c": 1},
        [slots(A), slots(C)],
    )
    assert where["a"] == A
    assert {where["b1"], where["b2"]} == {A, C}  # both ready at once: one each
    assert where["c"] == where["b2"]  # its parent's engine is free again by then


def test_an_engine_that_dies_mid_build_is_left_and_its_node_built_elsewhere(
    family: ScratchWorkspace, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    died = threading.Event()
    b = FakeExecutor(url=B, registry=registry, default_duration=0.05)

    def dies(request: BuildRequest) -> bool:
        if str(request.node.label).startswith("//apps"):
            b.daemon_up = False  # the engine is gone mid-build: the build fails, and so does every ping
            died.set()
            return True
        return False

    b._fail = dies
    a = FakeExecutor(url=A, registry=registry, default_duration=0.05)
    summary = run(family, engines(a, b), registry, tmp_path / "cache")
    assert died.is_set()
    assert summary.exit_code == 0, [(r.node, r.status, r.error) for r in summary.reports]
    assert all(r.status in (NodeStatus.BUILT, NodeStatus.CACHED) for r in summary.reports)
    assert any(f"engine {B} went down" in w for w in summary.warnings), summary.warnings
    for report in summary.reports:
        assert report.engine == A or report.status is NodeStatus.BUILT  # what b held before it died stays b's
    with Store(tmp_path / "cache") as store:
        for report in summary.reports:
            assert Records(store).on(report.engine).get(report.key) is not None


def test_a_build_failure_on_a_live_engine_is_not_retried(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    a = FakeExecutor(url=A, registry=registry, fail=["//apps/web:web"])
    b = FakeExecutor(url=B, registry=registry, fail=["//apps/web:web"])
    summary = run(family, engines(a, b), registry, tmp_path / "cache")
    assert summary.exit_code == 1
    web = [r for r in a.requests + b.requests if str(r.node.label) == "//apps/web:web"]
    assert len(web) == 1  # the engine answered: the build itself failed, once
    assert not any("went down" in w for w in summary.warnings)


def test_every_engine_down_fails_the_nodes_with_a_clear_message(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    a = FakeExecutor(url=A, registry=registry)
    b = FakeExecutor(url=B, registry=registry)

    def both_die(request: BuildRequest) -> bool:
        a.daemon_up = b.daemon_up = False
        return True

    a._fail = b._fail = both_die
    summary = run(family, engines(a, b), registry, tmp_path / "cache")
    assert summary.exit_code == 1
    failed = [r for r in summary.reports if r.status is NodeStatus.FAILED]
    assert failed and all(r.error for r in failed)
    assert any("no engine left" in (r.error or "") or "cannot reach" in (r.error or "") for r in failed)


def test_a_second_run_finds_everything_cached_on_the_engines_that_hold_it(
    family: ScratchWorkspace, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    a, b = FakeExecutor(url=A, registry=registry, default_duration=0.02), FakeExecutor(url=B, registry=registry)
    first = run(family, engines(a, b), registry, tmp_path / "cache")
    second = run(family, engines(a, b), registry, tmp_path / "cache")
    assert first.exit_code == second.exit_code == 0
    assert {r.status for r in second.reports} == {NodeStatus.CACHED}
    assert {r.node: r.engine for r in second.reports} == {r.node: r.engine for r in first.reports}


def test_human_tags_move_on_the_engine_holding_the_image(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    a, b = FakeExecutor(url=A, registry=registry, default_duration=0.02), FakeExecutor(url=B, registry=registry)
    summary = run(family, engines(a, b), registry, tmp_path / "cache")
    assert summary.promoted
    for report in summary.reports:
        holder = a if report.engine == A else b
        image = holder.inspect(report.tags[0])
        assert image is not None and image.labels[KEY_LABEL] == report.key


def test_load_brings_the_selection_to_the_home_engine(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    a, b = FakeExecutor(url=A, registry=registry), FakeExecutor(url=B, registry=registry, default_duration=0.02)
    build, plan = pipeline(family, engines(a, b), registry, tmp_path / "cache", load=True)
    summary = build.run(plan)
    build.store.close()
    assert summary.exit_code == 0
    for report in summary.reports:
        assert a.inspect(report.tags[0]) is not None, report.node  # every selected image is on the home engine


def test_dry_run_shows_where_each_node_would_be_built(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    a, b, c = (FakeExecutor(url=url, registry=registry) for url in (A, B, C))
    build, plan = pipeline(family, engines(a, b, c), registry, tmp_path / "cache")
    placed = build.placed(plan)
    build.store.close()
    where = {p.node: p.engine for p in placed.nodes if p.action is Action.BUILD}
    by_label = {str(node.label): url for node, url in where.items()}
    assert len(set(where.values())) >= 2  # the family's widest level is spread
    # a child goes where its parent is (nothing to pull) when that engine is free
    assert by_label["//apps/web:web"] == by_label["//lang/node:company-node-base"]
    assert by_label["//apps/api:api"] == by_label["//lang/python:company-python-base"]
    assert a.requests == b.requests == c.requests == []  # nothing was built


def test_several_engines_need_a_writable_registry_cache() -> None:
    a, b = FakeExecutor(url=A), FakeExecutor(url=B)
    with pytest.raises(UsageError, match="2 engines asked for, but no registry cache is set"):
        check_several(engines(a, b), None)
    with pytest.raises(UsageError, match="--no-remote-cache-write forbids writing"):
        check_several(engines(a, b), RemoteCache(FakeRegistry(), write=False))
    check_several(engines(a), None)  # one engine: no registry needed


def test_an_engine_that_does_not_answer_at_the_start_is_left_out(family: ScratchWorkspace, tmp_path: Path) -> None:
    from orchestrator.engine.api import DaemonUnavailable
    from orchestrator.engine.local import connect_all

    registry = FakeRegistry()
    a, c = FakeExecutor(url=A, registry=registry), FakeExecutor(url=C, registry=registry)
    fakes = {A: a, C: c}

    def connect(spec: EngineSpec | None) -> Engine:
        assert spec is not None
        if spec.url == B:
            raise DaemonUnavailable(f"cannot reach the Docker daemon at {B}: connection refused")
        return Engine(executor=fakes[spec.url], images=fakes[spec.url].references(), spec=spec)

    connected = connect_all([EngineSpec(url=B), EngineSpec(url=A), EngineSpec(url=C)], connect)
    assert [e.executor for e in connected.connected] == [a, c]  # the first that answered is home
    assert [spec.url for spec, _ in connected.unreachable] == [B] and connected.count == 3
    summary = run(family, connected, registry, tmp_path / "cache")
    assert summary.exit_code == 0
    assert {r.engine for r in summary.reports} <= {A, C}
    with pytest.raises(DaemonUnavailable, match="connection refused"):
        connect_all([EngineSpec(url=B)], connect)  # none answers: the first's error, exit 2


def test_each_engine_gets_jobs_from_the_command_line_else_its_entry_else_the_cores(
    family: ScratchWorkspace, tmp_path: Path
) -> None:
    import os

    registry = FakeRegistry()
    a, b = FakeExecutor(url=A, registry=registry), FakeExecutor(url=B, registry=registry)
    declared = Engines(
        connected=(
            Engine(executor=a, images={}, spec=EngineSpec(url=A, jobs=3)),
            Engine(executor=b, images={}, spec=EngineSpec(url=B)),
        )
    )
    build, _ = pipeline(family, declared, registry, tmp_path / "one", jobs=3)
    assert [m.jobs for m in build.fleet.members] == [3, os.cpu_count() or 1]  # not the home engine's 3
    build.store.close()
    build, _ = pipeline(family, declared, registry, tmp_path / "two", jobs=2, jobs_given=2)
    assert [m.jobs for m in build.fleet.members] == [2, 2]  # --jobs: every engine's
    build.store.close()


def test_a_parent_held_only_on_an_engine_that_went_down_is_built_again(
    family: ScratchWorkspace, tmp_path: Path
) -> None:
    before = FakeRegistry()
    b = FakeExecutor(url=B, registry=before)
    assert run(family, engines(b), before, tmp_path / "cache").exit_code == 0  # everything on b
    empty = FakeRegistry()  # a registry cache that never saw them: b's images reach no one else
    b.registry = empty
    a = FakeExecutor(url=A, registry=empty)
    family.write({"apps/api/app/main.py": "print('changed')\n"})
    build, plan = pipeline(family, engines(a, b), empty, tmp_path / "cache")
    assert {p.engine for p in plan.nodes if p.action is Action.CACHED} == {B}
    b.daemon_up = False  # b goes down after planning (found when its builder is chosen): left for the run
    summary = build.run(plan)
    build.store.close()
    assert summary.exit_code == 0, [(r.node, r.status, r.error) for r in summary.reports]
    got = {str(r.node.label): (r.status, r.engine) for r in summary.reports}
    assert got["//apps/api:api"] == (NodeStatus.BUILT, A)
    for parent in ("//lang/python:company-python-base", "//base:company-base", "//rootfs:debian"):
        assert got[parent] == (NodeStatus.BUILT, A), parent  # its only copy was on b: built again on a
    assert got["//apps/web:web"] == (NodeStatus.CACHED, B)  # untouched: held on b, needed by nothing
    assert any("built again on" in w for w in summary.warnings), summary.warnings
