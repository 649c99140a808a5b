"""The registry cache and ``--push`` in the build pipeline, against the FakeExecutor and FakeRegistry."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.engine.api import KEY_LABEL
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.plan import Action, Plan
from orchestrator.pipeline.run import Pipeline
from orchestrator.pipeline.summary import BuildSummary, NodeStatus
from orchestrator.registry.cache import RemoteCache
from orchestrator.workspace.loading import load
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.workspaces import ScratchWorkspace

TWO_PLATFORMS = 'workspace(name = "family", platforms = ["linux/amd64", "linux/arm64"])\n'


def make_build(
    ws: ScratchWorkspace, executor: FakeExecutor, cache_dir: Path, remote: RemoteCache | None, **options: object
) -> tuple[Pipeline, Plan]:
    loaded = load(ws.root)
    store = Store(cache_dir)
    build = Pipeline(loaded, store, cache_dir, executor, BuildOptions(**options), remote=remote)  # type: ignore[arg-type]
    plan = build.plan(loaded.graph.select([]))
    return build, plan


def run(
    ws: ScratchWorkspace,
    executor: FakeExecutor,
    registry: FakeRegistry,
    cache_dir: Path,
    *,
    write: bool = True,
    **options: object,
) -> BuildSummary:
    build, plan = make_build(ws, executor, cache_dir, RemoteCache(registry, write=write), **options)
    try:
        return build.run(plan)
    finally:
        build.store.close()


def statuses(summary: BuildSummary) -> dict[str, NodeStatus]:
    return {f"{r.node.label} {r.node.platform}": r.status for r in summary.reports}


def by_label(summary: BuildSummary) -> dict[str, NodeStatus]:
    return {str(r.node.label): r.status for r in summary.reports}


def test_built_images_are_pushed_under_their_content_tags(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    summary = run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    assert summary.exit_code == 0
    for report in summary.reports:
        repository, _, tag = report.tags[0].rpartition(":")
        image = registry.manifests[(repository, tag)]
        assert image.labels[KEY_LABEL] == report.key
        assert image.platform == report.node.platform


def test_a_second_machine_builds_and_pulls_nothing(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    assert run(family, FakeExecutor(registry=registry), registry, tmp_path / "a").exit_code == 0
    second = FakeExecutor(registry=registry)  # an engine with no images, a cache directory of its own
    summary = run(family, second, registry, tmp_path / "b")
    assert summary.exit_code == 0
    assert set(by_label(summary).values()) == {NodeStatus.REMOTE_CACHED}
    assert second.requests == [] and second.pulled == [] and second.pushed == []
    assert summary.promoted == ()  # nothing local to tag


def test_a_changed_leaf_builds_only_it_and_pulls_only_its_parent(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    family.write({"apps/api/app/main.py": "print('changed')\n"})
    second = FakeExecutor(registry=registry)
    summary = run(family, second, registry, tmp_path / "b")
    assert summary.exit_code == 0
    got = by_label(summary)
    assert got["//apps/api:api"] is NodeStatus.BUILT
    assert got["//lang/python:company-python-base"] is NodeStatus.PULLED
    assert [str(r.node.label) for r in second.requests] == ["//apps/api:api"]
    assert len(second.pulled) == 1 and "/company-python-base@sha256:" in second.pulled[0]  # by the checked digest
    assert {s for label, s in got.items() if label not in ("//apps/api:api", "//lang/python:company-python-base")} == {
        NodeStatus.REMOTE_CACHED
    }
    assert second.inspect("api:latest") is not None  # the human tag of what was built moved
    with Store(tmp_path / "b") as store:  # the pull is recorded like a build: the next run needs nothing
        python = next(r for r in summary.reports if str(r.node.label) == "//lang/python:company-python-base")
        assert Records(store).get(python.key) is not None


def test_load_pulls_the_selection(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    second = FakeExecutor(registry=registry)
    summary = run(family, second, registry, tmp_path / "b", load=True)
    assert set(by_label(summary).values()) == {NodeStatus.PULLED}
    assert second.requests == []
    assert second.inspect("company-base:latest") is not None


def test_a_poisoned_content_tag_is_not_used_but_rebuilt(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    first = run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    static = next(r for r in first.reports if str(r.node.label) == "//apps/static:static")
    repository, _, tag = static.tags[0].rpartition(":")
    registry.poison(repository, tag, labels={KEY_LABEL: "0" * 32}, platform="linux/amd64")
    second = FakeExecutor(registry=registry)
    build, plan = make_build(family, second, tmp_path / "b", RemoteCache(registry))
    planned = plan.by_node()[static.node]
    assert planned.action is Action.BUILD
    assert planned.poisoned is not None and "not used, rebuilt" in planned.reason
    summary = build.run(plan)
    build.store.close()
    assert by_label(summary)["//apps/static:static"] is NodeStatus.BUILT
    assert registry.manifests[(repository, tag)].labels[KEY_LABEL] == static.key  # the push repaired the tag


def test_a_tag_poisoned_between_lookup_and_pull_is_not_used(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    family.write({"apps/api/app/main.py": "print('changed')\n"})
    second = FakeExecutor(registry=registry)
    build, plan = make_build(family, second, tmp_path / "b", RemoteCache(registry))
    python = next(p for p in plan.to_pull if str(p.node.label) == "//lang/python:company-python-base")
    assert python.remote is not None
    repository, _, tag = python.image.rpartition(":")
    registry.poison(repository, tag, labels={KEY_LABEL: python.key}, platform="linux/arm64")
    summary = build.run(plan)
    build.store.close()
    assert by_label(summary)["//lang/python:company-python-base"] is NodeStatus.PULLED
    assert second.pulled == [f"{registry.address}/{repository}@{python.remote.digest}"]  # the checked digest
    image = second.inspect(python.image)
    assert image is not None and image.platform == "linux/amd64"


def test_a_checked_copy_gone_between_lookup_and_pull_is_rebuilt(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    family.write({"apps/api/app/main.py": "print('changed')\n"})
    second = FakeExecutor(registry=registry)
    build, plan = make_build(family, second, tmp_path / "b", RemoteCache(registry))
    python = next(p for p in plan.to_pull if str(p.node.label) == "//lang/python:company-python-base")
    assert python.remote is not None
    repository, _, tag = python.image.rpartition(":")
    registry.delete_manifest(repository, python.remote.digest)  # the checked copy is gone ...
    registry.poison(repository, tag, labels={KEY_LABEL: python.key}, platform="linux/arm64")  # ... a wrong one came
    summary = build.run(plan)
    build.store.close()
    got = by_label(summary)
    assert got["//lang/python:company-python-base"] is NodeStatus.BUILT  # built here, on pulled parents
    assert got["//base:company-base"] is NodeStatus.PULLED
    assert got["//apps/api:api"] is NodeStatus.BUILT
    assert summary.exit_code == 0
    assert any("manifest unknown" in w and "building it here instead" in w for w in summary.warnings)
    image = second.inspect(python.image)
    assert image is not None and image.platform == "linux/amd64"  # the wrong image never got the content tag
    assert registry.manifests[(repository, tag)].platform == "linux/amd64"  # and the push repaired the tag


def test_registry_down_after_the_lookup_means_building_locally(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    family.write({"apps/api/app/main.py": "print('changed')\n"})
    second = FakeExecutor(registry=registry)
    build, plan = make_build(family, second, tmp_path / "b", RemoteCache(registry))
    assert len(plan.to_pull) == 1
    registry.up = False  # gone between the lookup and the pull
    summary = build.run(plan)
    build.store.close()
    assert summary.exit_code == 0
    got = by_label(summary)
    assert got["//apps/api:api"] is NodeStatus.BUILT
    assert {
        got[label] for label in ("//rootfs:debian", "//base:company-base", "//lang/python:company-python-base")
    } == {NodeStatus.BUILT}
    assert any("unavailable" in w for w in summary.warnings)


def test_registry_down_is_a_warning_and_a_local_build(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry(up=False)
    executor = FakeExecutor(registry=registry)
    summary = run(family, executor, registry, tmp_path / "a")
    assert summary.exit_code == 0
    assert set(by_label(summary).values()) == {NodeStatus.BUILT}
    assert any("unavailable, building locally" in w for w in summary.warnings)
    assert executor.pushed == []


def test_no_remote_cache_write_reads_but_never_pushes(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    family.write({"apps/api/app/main.py": "print('changed')\n"})
    second = FakeExecutor(registry=registry)
    summary = run(family, second, registry, tmp_path / "b", write=False)
    assert by_label(summary)["//apps/api:api"] is NodeStatus.BUILT
    assert second.pushed == []


def test_images_built_before_the_registry_was_set_are_pushed(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry()
    executor = FakeExecutor(registry=registry)
    loaded = load(family.root)
    with Store(tmp_path / "a") as store:
        build = Pipeline(loaded, store, tmp_path / "a", executor, BuildOptions())
        build.run(build.plan(loaded.graph.select([])))
    assert registry.manifests == {}
    summary = run(family, executor, registry, tmp_path / "a")
    assert set(by_label(summary).values()) == {NodeStatus.CACHED}
    assert len(registry.manifests) == len(summary.reports)


def test_push_puts_one_index_per_human_tag_of_a_two_platform_target(family: ScratchWorkspace, tmp_path: Path) -> None:
    family.write({"WORKSPACE": TWO_PLATFORMS})
    registry = FakeRegistry()
    summary = run(family, FakeExecutor(registry=registry), registry, tmp_path / "a", push=True)
    assert summary.exit_code == 0
    assert summary.published is not None and summary.published.errors == ()
    assert "registry.test:5000/company-base:latest" in summary.published.pushed
    index = registry.indexes[("company-base", "latest")]
    assert [i.platform for i in index] == ["linux/amd64", "linux/arm64"]
    keys = {r.node.platform: r.key for r in summary.reports if str(r.node.label) == "//base:company-base"}
    assert {i.platform: i.labels[KEY_LABEL] for i in index} == keys


def test_push_again_leaves_tags_that_already_name_the_images(family: ScratchWorkspace, tmp_path: Path) -> None:
    family.write({"WORKSPACE": TWO_PLATFORMS})
    registry = FakeRegistry()
    first = run(family, FakeExecutor(registry=registry), registry, tmp_path / "a", push=True)
    assert first.published is not None and first.published.pushed
    again = run(family, FakeExecutor(registry=registry), registry, tmp_path / "b", push=True)
    assert again.published is not None
    assert again.published.pushed == () and again.published.errors == ()
    assert sorted(again.published.unchanged) == sorted(first.published.pushed)


def test_push_from_a_machine_that_builds_nothing(family: ScratchWorkspace, tmp_path: Path) -> None:
    family.write({"WORKSPACE": TWO_PLATFORMS})
    registry = FakeRegistry()
    run(family, FakeExecutor(registry=registry), registry, tmp_path / "a")
    assert ("company-base", "latest") not in registry.manifests
    second = FakeExecutor(registry=registry)
    summary = run(family, second, registry, tmp_path / "b", push=True)
    assert summary.exit_code == 0 and second.requests == [] and second.pulled == []
    assert ("company-base", "latest") in registry.indexes


def test_push_leaves_the_human_tags_of_a_failed_closure_alone(family: ScratchWorkspace, tmp_path: Path) -> None:
    family.write({"WORKSPACE": TWO_PLATFORMS})
    registry = FakeRegistry()
    executor = FakeExecutor(
        registry=registry, fail=lambda r: r.node.platform == "linux/arm64" and "python" in str(r.node.label)
    )
    summary = run(family, executor, registry, tmp_path / "a", push=True)
    assert summary.exit_code == 1
    assert summary.published is not None
    pushed = set(summary.published.pushed)
    assert "registry.test:5000/company-base:latest" in pushed
    assert not any("company-python-base:" in ref or "/api:" in ref for ref in pushed)
    assert ("company-python-base", "latest") not in registry.manifests
    assert ("api", "latest") not in registry.manifests


def test_push_with_the_registry_down_fails_the_run(family: ScratchWorkspace, tmp_path: Path) -> None:
    registry = FakeRegistry(up=False)
    summary = run(family, FakeExecutor(registry=registry), registry, tmp_path / "a", push=True)
    assert summary.published is not None and summary.published.pushed == ()
    assert "nothing pushed" in summary.published.errors[0]
    assert summary.exit_code == 1


def test_platform_option_selects_nodes(family: ScratchWorkspace, tmp_path: Path) -> None:
    family.write({"WORKSPACE": TWO_PLATFORMS})
    executor = FakeExecutor()
    loaded = load(family.root)
    with Store(tmp_path / "a") as store:
        build = Pipeline(loaded, store, tmp_path / "a", executor, BuildOptions(platforms=("linux/arm64",)))
        summary = build.run(build.plan(loaded.graph.select([])))
    assert {r.node.platform for r in summary.reports} == {"linux/arm64"}
    assert {r.platform for r in executor.requests} == {"linux/arm64"}


@pytest.mark.parametrize("platform", ["linux/s390x"])
def test_platform_option_matching_nothing_is_an_error(family: ScratchWorkspace, tmp_path: Path, platform: str) -> None:
    from orchestrator.errors import NothingMatchedError

    loaded = load(family.root)
    with Store(tmp_path / "a") as store:
        build = Pipeline(loaded, store, tmp_path / "a", FakeExecutor(), BuildOptions(platforms=(platform,)))
        with pytest.raises(NothingMatchedError, match="linux/s390x"):
            build.compute_keys(loaded.graph.select([]))
