"""images.lock: pinning bases, keys from pins, --locked, query outdated, hermetic checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cache.store import Store
from orchestrator.errors import WorkspaceError
from orchestrator.pipeline.hermetic import HermeticError, PinnedImageMissing, check_hermetic, check_pinned_images
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.run import Pipeline
from orchestrator.registry.pins import LockError, Resolver, check_locked, outdated_bases, updated_lock
from orchestrator.workspace.loading import load
from orchestrator.workspace.lockfile import LOCK_FILE, Lock, Pin, read_lock, write_lock
from tests.fakes.executor import FakeExecutor
from tests.workspaces import ScratchWorkspace

# The family's external bases in use (golang:1.21 is only in a stage nothing needs).
BASES = {("alpine:3.19", "linux/amd64"), ("gcc:13", "linux/amd64")}


def engine_with_bases(**versions: str) -> FakeExecutor:
    executor = FakeExecutor()
    for reference in ("alpine:3.19", "gcc:13"):
        executor.add_image(reference, labels={"v": versions.get(reference.split(":")[0], "1")})
    return executor


def lock_family(ws: ScratchWorkspace, executor: FakeExecutor) -> Lock:
    loaded = load(ws.root)
    lock, _ = updated_lock(loaded.graph, loaded.lock, Resolver(executor))
    write_lock(ws.root, lock)
    return lock


def test_lock_pins_every_base_in_use_from_the_engine(family: ScratchWorkspace) -> None:
    executor = engine_with_bases()
    lock = lock_family(family, executor)
    assert {(ref, platform) for ref, platform, _ in lock.pins()} == BASES
    gcc = executor.inspect("gcc:13")
    assert gcc is not None
    assert lock.pin("gcc:13", "linux/amd64") == Pin(digest=gcc.image_id, source="engine")
    text = (family.root / LOCK_FILE).read_text()
    assert json.loads(text)["version"] == 1 and text.endswith("\n")
    assert write_lock(family.root, lock) is False  # the same lock: the file is left alone
    assert read_lock(family.root) == lock


def test_keys_change_exactly_when_a_locked_digest_changes(family: ScratchWorkspace) -> None:
    unpinned = family.keys()
    lock_family(family, engine_with_bases())
    pinned = family.keys()
    changed = {name for name in pinned if pinned[name] != unpinned[name]}
    assert changed == {
        "//apps/static:static linux/amd64",  # FROM gcc:13
        "//hardened:secure linux/amd64",  # COPY --from the static image
        "//apps/web:web linux/amd64",  # COPY --from=alpine:3.19
    }
    lock_family(family, engine_with_bases())
    assert family.keys() == pinned  # the same digests: the same keys
    loaded = load(family.root)
    lock, _ = updated_lock(loaded.graph, loaded.lock, Resolver(engine_with_bases(gcc="2")), update=["gcc:13"])
    write_lock(family.root, lock)
    moved = family.keys()
    assert {name for name in moved if moved[name] != pinned[name]} == {
        "//apps/static:static linux/amd64",
        "//hardened:secure linux/amd64",
    }


def test_lock_keeps_pins_unless_asked_to_update(family: ScratchWorkspace) -> None:
    first = lock_family(family, engine_with_bases())
    loaded = load(family.root)
    newer = engine_with_bases(gcc="2", alpine="2")
    kept, changes = updated_lock(loaded.graph, loaded.lock, Resolver(newer))
    assert kept == first and changes == []
    one, changes = updated_lock(loaded.graph, loaded.lock, Resolver(newer), update=["gcc:13"])
    assert [c.reference for c in changes] == ["gcc:13"]
    assert one.pin("alpine:3.19", "linux/amd64") == first.pin("alpine:3.19", "linux/amd64")
    _, changes = updated_lock(loaded.graph, loaded.lock, Resolver(newer), update=[])
    assert {c.reference for c in changes} == {"gcc:13", "alpine:3.19"}
    with pytest.raises(LockError, match="no target uses debian:sid"):
        updated_lock(loaded.graph, loaded.lock, Resolver(newer), update=["debian:sid"])


def test_a_base_the_engine_lacks_cannot_be_pinned(family: ScratchWorkspace) -> None:
    loaded = load(family.root)
    executor = FakeExecutor()
    executor.add_image("alpine:3.19")
    with pytest.raises(LockError, match=r"cannot pin gcc:13 for linux/amd64: the engine has no image gcc:13"):
        updated_lock(loaded.graph, None, Resolver(executor))
    executor.add_image("gcc:13", platform="linux/arm64")
    with pytest.raises(LockError, match="is for linux/arm64, not linux/amd64"):
        updated_lock(loaded.graph, None, Resolver(executor))


def test_unused_pins_are_dropped(family: ScratchWorkspace) -> None:
    lock = lock_family(family, engine_with_bases())
    extra = Lock({**lock.bases, "debian:sid": {"linux/amd64": Pin(digest="sha256:" + "1" * 64, source="engine")}})
    write_lock(family.root, extra)
    loaded = load(family.root)
    cleaned, changes = updated_lock(loaded.graph, loaded.lock, Resolver(engine_with_bases()))
    assert cleaned == lock
    assert [(c.reference, c.new) for c in changes] == [("debian:sid", None)]


def test_locked_fails_naming_the_unpinned_base(family: ScratchWorkspace) -> None:
    result = family.run("build", "--locked", "--dry-run")
    assert result.exit_code == 2
    assert "does not pin alpine:3.19 for linux/amd64 (used by //apps/web:web)" in result.output
    lock = lock_family(family, engine_with_bases())
    loaded = load(family.root)
    check_locked(loaded.graph, loaded.lock, list(loaded.graph.node_deps))  # complete: no error
    partial = Lock({"gcc:13": lock.bases["gcc:13"]})
    write_lock(family.root, partial)
    result = family.run("build", "--locked", "--dry-run")
    assert result.exit_code == 2 and "alpine:3.19" in result.output and "gcc:13 for" not in result.output


def test_locked_fails_on_a_stale_lock(family: ScratchWorkspace) -> None:
    lock = lock_family(family, engine_with_bases())
    write_lock(
        family.root,
        Lock({**lock.bases, "debian:sid": {"linux/amd64": Pin(digest="sha256:" + "1" * 64, source="engine")}}),
    )
    loaded = load(family.root)
    with pytest.raises(LockError, match=r"stale: it pins debian:sid for linux/amd64, which no target uses"):
        check_locked(loaded.graph, loaded.lock, list(loaded.graph.node_deps))


def test_a_malformed_lock_names_the_file(family: ScratchWorkspace) -> None:
    (family.root / LOCK_FILE).write_text('{"version": 1,\n "bases": }\n')
    with pytest.raises(WorkspaceError, match=r"images.lock:2:\d+: not valid JSON"):
        read_lock(family.root)
    result = family.run("query", "buildorder")
    assert result.exit_code == 2 and "images.lock:2" in result.output


def test_outdated_names_the_moved_base_and_exactly_its_reverse_dependencies(family: ScratchWorkspace) -> None:
    lock_family(family, engine_with_bases())
    loaded = load(family.root)
    assert loaded.lock is not None
    assert outdated_bases(loaded.graph, loaded.lock, Resolver(engine_with_bases())) == []
    reimported = engine_with_bases(gcc="2")  # gcc:13 imported again, with other content
    found = outdated_bases(loaded.graph, loaded.lock, Resolver(reimported))
    assert [(o.reference, o.platform) for o in found] == [("gcc:13", "linux/amd64")]
    assert [str(label) for label in found[0].targets] == ["//apps/static:static", "//hardened:secure"]
    new = reimported.inspect("gcc:13")
    assert new is not None and found[0].current == new.image_id
    gone = FakeExecutor()
    gone.add_image("alpine:3.19", labels={"v": "1"})
    missing = outdated_bases(loaded.graph, loaded.lock, Resolver(gone))
    assert [(o.reference, o.current) for o in missing] == [("gcc:13", None)]
    assert missing[0].error is not None and "has no image gcc:13" in missing[0].error


def test_builds_name_the_pinned_digests(family: ScratchWorkspace, tmp_path: Path) -> None:
    executor = engine_with_bases()
    lock = lock_family(family, executor)
    loaded = load(family.root)
    with Store(tmp_path / "cache") as store:
        build = Pipeline(loaded, store, tmp_path / "cache", executor, BuildOptions())
        assert build.run(build.plan(loaded.graph.select(["//apps/static", "//apps/web"]))).exit_code == 0
    static = next(r for r in executor.requests if str(r.node.label) == "//apps/static:static")
    gcc = lock.pin("gcc:13", "linux/amd64")
    assert gcc is not None
    assert f"FROM {gcc.digest} AS builder" in static.dockerfile_text
    web = next(r for r in executor.requests if str(r.node.label) == "//apps/web:web")
    alpine = lock.pin("alpine:3.19", "linux/amd64")
    assert alpine is not None
    assert f"COPY --from={alpine.digest} /etc/alpine-release /etc/" in web.dockerfile_text
    assert static.network_mode is None


def test_a_pinned_image_gone_from_the_engine_is_reported(family: ScratchWorkspace) -> None:
    executor = engine_with_bases()
    lock_family(family, executor)
    loaded = load(family.root)
    nodes = list(loaded.graph.node_deps)
    check_pinned_images(loaded.graph, loaded.lock, nodes, executor)
    executor.remove("gcc:13")
    with pytest.raises(PinnedImageMissing, match=r"no longer has; .*orchestrator lock --update gcc:13"):
        check_pinned_images(loaded.graph, loaded.lock, nodes, executor)


def test_hermetic_images_need_srcs_and_pinned_bases(family: ScratchWorkspace, tmp_path: Path) -> None:
    family.write(
        {
            "apps/static/BUILD": 'image(name = "static", hermetic = True)\n',
            "apps/api/BUILD": 'image(name = "api", target = "runtime", srcs = glob(["app/**"]), hermetic = True)\n',
        }
    )
    loaded = load(family.root)
    nodes = list(loaded.graph.node_deps)
    with pytest.raises(HermeticError) as raised:
        check_hermetic(loaded.graph, loaded.workspace.settings, None, nodes)
    message = str(raised.value)
    assert "//apps/static:static: a hermetic image must declare its context files in srcs" in message
    assert "uses gcc:13, which images.lock does not pin" in message
    assert "//apps/api" not in message  # declared srcs, and no external base
    family.write({"apps/static/BUILD": 'image(name = "static", srcs = ["main.c", "Dockerfile"], hermetic = True)\n'})
    lock_family(family, engine_with_bases())
    loaded = load(family.root)
    check_hermetic(loaded.graph, loaded.workspace.settings, loaded.lock, nodes)  # declared and pinned
    executor = engine_with_bases()
    with Store(tmp_path / "cache") as store:
        build = Pipeline(loaded, store, tmp_path / "cache", executor, BuildOptions())
        build.run(build.plan(loaded.graph.select(["//apps/static", "//apps/api"])))
    network = {str(r.node.label): r.network_mode for r in executor.requests}
    assert network["//apps/static:static"] == "none"
    assert network["//apps/api:api"] == "none"
    assert network["//base:company-base"] is None  # not hermetic


def test_workspace_hermetic_applies_to_every_image(family: ScratchWorkspace) -> None:
    family.write({"WORKSPACE": 'workspace(platforms = ["linux/amd64"], hermetic = True)\n'})
    loaded = load(family.root)
    with pytest.raises(HermeticError, match="//base:company-base: a hermetic image must declare"):
        check_hermetic(loaded.graph, loaded.workspace.settings, None, list(loaded.graph.node_deps))
    result = family.run("build", "--dry-run")
    assert result.exit_code == 2 and "not hermetic" in result.output


class _IndexRegistry:
    """A registry whose tag is a two-platform index (what Resolver asks of a registry)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def lookup(self, repository: str, tag: str) -> object:
        from orchestrator.registry.client import OCI_INDEX, RemoteImage

        return RemoteImage(
            repository=repository,
            tag=tag,
            digest="sha256:" + "9" * 64,
            media_type=OCI_INDEX,
            size=1,
            labels={},
            platform="",
        )

    def manifest_bytes(self, repository: str, reference: str) -> tuple[str, bytes, str]:
        manifests = [
            {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
        return "application/vnd.oci.image.index.v1+json", json.dumps({"manifests": manifests}).encode(), reference

    def close(self) -> None:
        pass


def test_a_multi_platform_tag_is_pinned_per_platform_from_its_index() -> None:
    resolver = Resolver(None, registry_factory=_IndexRegistry)  # type: ignore[arg-type]
    reference = "registry.example.com:5000/team/base:1"
    assert resolver.resolve(reference, "linux/amd64") == Pin(digest="sha256:" + "a" * 64, source="registry")
    assert resolver.resolve(reference, "linux/arm64") == Pin(digest="sha256:" + "b" * 64, source="registry")
    with pytest.raises(LockError, match="has no image for linux/s390x; no Docker engine to ask"):
        resolver.resolve(reference, "linux/s390x")
    digest_given = "debian@sha256:" + "c" * 64
    assert resolver.resolve(digest_given, "linux/amd64") == Pin(digest="sha256:" + "c" * 64, source="reference")
