"""``orchestrator gc``: the keep rule, and what it removes from a fake engine and a fake registry."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from orchestrator.cache import names
from orchestrator.cache.records import Records
from orchestrator.cache.store import Store
from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.pipeline.gc import ContentTag, Held, Place, gc, kept_keys, plan_gc
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.run import Pipeline
from orchestrator.registry.cache import RemoteCache
from orchestrator.registry.client import ManifestInfo
from orchestrator.workspace.loading import load
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.workspaces import ScratchWorkspace

NODE = Node(label=Label("app", "app"), platform="linux/amd64")
OTHER = Node(label=Label("app", "app"), platform="linux/arm64")


def test_keeps_the_current_key_and_the_n_most_recently_built() -> None:
    seen = {NODE: {"k1": 1.0, "k2": 2.0, "k3": 3.0, "k4": 4.0, "k5": 5.0}}
    assert kept_keys({NODE: "k5"}, seen, 3) == {NODE: ("k5", "k4", "k3")}


def test_the_current_key_is_kept_even_when_old_or_never_built() -> None:
    seen = {NODE: {"k1": 1.0, "k2": 2.0, "k3": 3.0, "k4": 4.0}}
    assert kept_keys({NODE: "k1"}, seen, 2) == {NODE: ("k1", "k4", "k3")}
    assert kept_keys({NODE: "new"}, seen, 2) == {NODE: ("new", "k4", "k3")}


def test_keep_zero_keeps_only_the_current_key() -> None:
    assert kept_keys({NODE: "k2"}, {NODE: {"k1": 1.0, "k2": 2.0}}, 0) == {NODE: ("k2",)}


def test_keys_of_unknown_age_are_the_oldest_and_ties_go_by_key() -> None:
    seen = {NODE: {"a": None, "b": 7.0, "c": 7.0, "d": None}}
    assert kept_keys({}, seen, 3) == {NODE: ("b", "c", "a")}


def test_each_platform_is_judged_alone() -> None:
    seen = {NODE: {"k1": 1.0, "k2": 2.0}, OTHER: {"k1": 1.0, "k9": 9.0}}
    assert kept_keys({NODE: "k2", OTHER: "k1"}, seen, 0) == {NODE: ("k2",), OTHER: ("k1",)}


def _tag(place: Place, key: str, image: str, when: float, repository: str = "app") -> ContentTag:
    reference = f"{repository}:key-{key}" if place is Place.engine else f"registry.test:5000/{repository}:key-{key}"
    return ContentTag(
        place=place, reference=reference, repository=repository, node=NODE, key=key, image=image, built_at=when
    )


def test_an_image_a_human_tag_names_stays_under_every_content_tag() -> None:
    held = Held(
        tags=(_tag(Place.engine, "old", "sha256:img-old", 1.0), _tag(Place.engine, "older", "sha256:img-older", 0.5)),
        human_images=frozenset({(Place.engine, "sha256:img-old")}),
    )
    plan = plan_gc({NODE: "now"}, held, 0)
    assert [t.reference for t in plan.untag] == ["app:key-older"]


def test_a_manifest_something_kept_refers_to_is_not_deleted() -> None:
    def image(digest: str, *blobs: tuple[str, int]) -> ManifestInfo:
        return ManifestInfo(digest=digest, media_type="m", size=100, blobs=blobs)

    attested = "sha256:" + "3" * 64
    manifests = {
        ("app", "key-k1"): image("sha256:d1", ("sha256:base", 1000), ("sha256:l1", 10)),
        ("app", "key-k2"): image("sha256:d2", ("sha256:base", 1000), ("sha256:l2", 20)),
        ("app", "key-k3"): image(attested, ("sha256:base", 1000), ("sha256:l3", 30)),
        ("app", "key-k4"): image("sha256:d4", ("sha256:base", 1000)),
        ("app", "key-k5"): image("sha256:d5", ("sha256:base", 1000)),
        ("app", "latest"): ManifestInfo(digest="sha256:index", media_type="i", size=50, children=("sha256:d2",)),
        ("app", f"sha256-{'3' * 64}.att"): image("sha256:att"),
        ("app", "old-release"): image("sha256:d4"),
    }
    tags = tuple(_tag(Place.registry, f"k{i}", manifests[("app", f"key-k{i}")].digest, float(i)) for i in range(1, 6))
    held = Held(tags=tags, human_images=frozenset(), manifests=manifests)
    plan = plan_gc({NODE: "k5"}, held, 0)
    assert [(d.digest, [t.key for t in d.tags]) for d in plan.deletions] == [("sha256:d1", ["k1"])]
    assert {t.key: why for t, why in plan.left} == {
        "k2": "its manifest sha256:d2 is also what latest refers to",
        "k3": f"its manifest sha256:{'3' * 64} is also what sha256-{'3' * 64}.att refers to",
        "k4": "its manifest sha256:d4 is also what old-release refers to",
    }
    # d1's manifest and its own layer; the base layer is still used by what stays
    assert plan.registry_bytes == 100 + 10


def _workspace(ws: ScratchWorkspace) -> None:
    ws.write(
        {
            "WORKSPACE": 'workspace(platforms = ["linux/amd64"])\n',
            "base/BUILD": 'image(name = "base", repository = "gc-base")\n',
            "base/Dockerfile": "FROM scratch\nCOPY motd /motd\n",
            "base/motd": "hello\n",
            "app/BUILD": 'image(name = "app", repository = "gc-app", tags = ["latest"])\n',
            "app/Dockerfile": "FROM gc-base\nCOPY app.txt /app.txt\n",
            "app/app.txt": "v0\n",
        }
    )


def _build(ws: ScratchWorkspace, executor: FakeExecutor, registry: FakeRegistry, cache_dir: Path, day: int) -> None:
    loaded = load(ws.root)
    with Store(cache_dir) as store:
        pipeline = Pipeline(loaded, store, cache_dir, executor, BuildOptions(), remote=RemoteCache(registry))
        summary = pipeline.run(pipeline.plan(loaded.graph.select([])))
        assert summary.exit_code == 0
        records = Records(store)
        for report in summary.reports:  # one build a day: built_at in seconds would tie within a test
            record = records.get(report.key)
            if record is not None and report.status.value == "built":
                stamped = replace(record, built_at=f"2024-01-{day:02d}T00:00:00+00:00")
                store.set(names.record(report.key), asdict(stamped))


def test_five_builds_with_edits_leave_exactly_what_the_rule_keeps(workspace: ScratchWorkspace, tmp_path: Path) -> None:
    _workspace(workspace)
    registry = FakeRegistry()
    executor = FakeExecutor(registry=registry)
    cache_dir = tmp_path / "cache"
    app_keys = []
    for day in range(1, 6):
        workspace.write({"app/app.txt": f"v{day}\n"})
        _build(workspace, executor, registry, cache_dir, day)
        app_keys.append(workspace.keys("//app:app")[f"//app:app {NODE.platform}"])
    base_key = workspace.keys("//base:base")["//base:base linux/amd64"]
    assert len(set(app_keys)) == 5

    loaded = load(workspace.root)
    with Store(cache_dir) as store:
        dry = gc(loaded=loaded, store=store, executor=executor, registry=registry, keep=2, dry_run=True)
        # the engine also names the registry's copies it pushed
        gone = sorted(f"{repo}:key-{k}" for k in app_keys[:3] for repo in ("gc-app", "registry.test:5000/gc-app"))
        assert sorted(t.reference for t in dry.plan.untag) == gone
        assert registry.deleted == [] and len(executor.stored_images()) == 6
        done = gc(loaded=loaded, store=store, executor=executor, registry=registry, keep=2)
    assert done.plan.untag == dry.plan.untag
    engine = sorted(ref for image in executor.stored_images() for ref in image.repo_tags)
    kept = [f"{repo}:key-{k}" for k in app_keys[3:] for repo in ("gc-app", "registry.test:5000/gc-app")]
    base = [f"gc-base:key-{base_key}", f"registry.test:5000/gc-base:key-{base_key}", "gc-base:latest"]
    assert engine == sorted([*base, "gc-app:latest", *kept])
    in_registry = sorted(f"{repo}:{tag}" for repo, tag in registry.manifests)
    assert in_registry == sorted([f"gc-base:key-{base_key}"] + [f"gc-app:key-{k}" for k in app_keys[3:]])
