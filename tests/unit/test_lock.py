"""images.lock: pinning bases, keys from pins, --locked, query outdated, hermetic checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest

from orchestrator.cache.store import Store
from orchestrator.errors import WorkspaceError
from orchestrator.pipeline.hermetic import HermeticError, PinnedImageMissing, check_hermetic, check_pinned_images
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.run import Pipeline
from orchestrator.registry.client import Registry
from orchestrator.registry.pins import LockError, Resolver, check_locked, outdated_bases, updated_lock
from orchestrator.workspace import lockfile
from orchestrator.workspace.loading import load
from orchestrator.workspace.lockfile import LOCK_FILE, Lock, Pin, changed_pins, parse_lock, read_lock, write_lock
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
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

    def image_config(self, repository: str, reference: str) -> dict[str, object]:
        """Only the arm64 image has ONBUILD triggers."""
        triggers = ["COPY . /src"] if reference == "sha256:" + "b" * 64 else None
        return {"os": "linux", "config": {"OnBuild": triggers}}

    def close(self) -> None:
        pass


def test_a_multi_platform_tag_is_pinned_per_platform_from_its_index() -> None:
    resolver = Resolver(None, registry_factory=_IndexRegistry)  # type: ignore[arg-type]
    reference = "registry.example.com:5000/team/base:1"
    assert resolver.resolve(reference, "linux/amd64") == Pin(digest="sha256:" + "a" * 64, source="registry")
    assert resolver.resolve(reference, "linux/arm64") == Pin(
        digest="sha256:" + "b" * 64, source="registry", onbuild=True
    )
    with pytest.raises(LockError, match="has no image for linux/s390x; no Docker engine to ask"):
        resolver.resolve(reference, "linux/s390x")
    digest_given = "debian@sha256:" + "c" * 64
    assert resolver.resolve(digest_given, "linux/amd64") == Pin(digest="sha256:" + "c" * 64, source="reference")


# --- ONBUILD triggers of pinned bases ------------------------------------------------------------

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def test_onbuild_is_written_only_when_true_and_read_back() -> None:
    lock = Lock(
        {
            "gcc:13": {"linux/amd64": Pin(digest=DIGEST_A, source="engine", onbuild=True)},
            "alpine:3.19": {
                "linux/amd64": Pin(digest=DIGEST_B, source="registry"),
                "linux/arm64": Pin(digest=DIGEST_A, source="registry", onbuild=True),
            },
            "debian:bookworm": {"linux/amd64": Pin(digest=DIGEST_B, source="engine")},
        }
    )
    text = json.dumps(lockfile._to_json(lock), indent=2, sort_keys=True) + "\n"
    bases = json.loads(text)["bases"]
    assert bases["gcc:13"]["linux/amd64"] == {"digest": DIGEST_A, "onbuild": True, "source": "engine"}
    assert bases["alpine:3.19"]["linux/amd64"] == {"digest": DIGEST_B, "source": "registry"}  # false: omitted
    assert "onbuild" not in bases["debian:bookworm"]["linux/amd64"]
    assert parse_lock(text) == lock
    assert lock.bases_with_triggers() == frozenset({"gcc:13", "alpine:3.19"})  # on any platform
    assert Lock().bases_with_triggers() == frozenset()


def test_a_lock_without_triggers_keeps_its_bytes(tmp_path: Path) -> None:
    text = (
        '{\n  "bases": {\n    "gcc:13": {\n      "linux/amd64": {\n'
        f'        "digest": "{DIGEST_A}",\n        "source": "engine"\n'
        '      }\n    }\n  },\n  "version": 1\n}\n'
    )
    (tmp_path / LOCK_FILE).write_text(text)
    lock = read_lock(tmp_path)
    assert lock is not None and lock.pin("gcc:13", "linux/amd64") == Pin(digest=DIGEST_A, source="engine")
    assert write_lock(tmp_path, lock) is False
    assert (tmp_path / LOCK_FILE).read_text() == text


@pytest.mark.parametrize("value", [1, 0, None, "yes", "true"])
def test_an_onbuild_that_is_not_a_bool_is_rejected(value: object) -> None:
    pin = {"digest": DIGEST_A, "source": "engine", "onbuild": value}
    text = json.dumps({"version": 1, "bases": {"gcc:13": {"linux/amd64": pin}}})
    with pytest.raises(WorkspaceError, match=r"images.lock is not a lock file of version 1: gcc:13 linux/amd64: bad"):
        parse_lock(text)
    good = json.dumps({"version": 1, "bases": {"gcc:13": {"linux/amd64": {**pin, "onbuild": True}}}})
    assert parse_lock(good).bases_with_triggers() == {"gcc:13"}


def test_a_change_of_triggers_is_a_changed_pin() -> None:
    before = Lock({"gcc:13": {"linux/amd64": Pin(digest=DIGEST_A, source="engine")}})
    after = Lock({"gcc:13": {"linux/amd64": Pin(digest=DIGEST_A, source="engine", onbuild=True)}})
    assert changed_pins(before, after) == {("gcc:13", "linux/amd64")}
    assert changed_pins(after, after) == set()


def test_lock_records_the_engines_onbuild_triggers(family: ScratchWorkspace) -> None:
    executor = engine_with_bases()
    gcc = executor.add_image("gcc:13", labels={"v": "1"})
    executor.images[gcc].onbuild = True
    lock = lock_family(family, executor)
    assert lock.pin("gcc:13", "linux/amd64") == Pin(digest=gcc, source="engine", onbuild=True)
    assert lock.bases_with_triggers() == {"gcc:13"}
    written = json.loads((family.root / LOCK_FILE).read_text())["bases"]
    assert written["gcc:13"]["linux/amd64"]["onbuild"] is True
    assert "onbuild" not in written["alpine:3.19"]["linux/amd64"]
    # the same image, its triggers gone (an engine that says otherwise now): --update reports a change
    executor.images[gcc].onbuild = False
    loaded = load(family.root)
    updated, changes = updated_lock(loaded.graph, loaded.lock, Resolver(executor), update=["gcc:13"])
    assert [(c.reference, c.old, c.new, c.old_onbuild, c.onbuild) for c in changes] == [
        ("gcc:13", gcc, gcc, True, False)
    ]
    assert updated.bases_with_triggers() == frozenset()


def test_the_lock_command_says_a_base_has_triggers(family: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections.abc import Iterator
    from contextlib import contextmanager

    from orchestrator.cli import engine as cli_engine

    executor = engine_with_bases()
    executor.images[executor.add_image("gcc:13", labels={"v": "1"})].onbuild = True

    @contextmanager
    def resolver(spec: object = None) -> Iterator[Resolver]:
        yield Resolver(executor)

    monkeypatch.setattr(cli_engine, "base_resolver", resolver)
    result = family.run("lock")
    assert result.exit_code == 0, result.output
    [gcc] = [line for line in result.stdout.splitlines() if "gcc:13" in line]
    assert gcc.startswith("pinned  gcc:13 linux/amd64 sha256:") and gcc.endswith(
        "(ONBUILD triggers: the whole context of its users is an input)"
    )
    [alpine] = [line for line in result.stdout.splitlines() if "alpine:3.19" in line]
    assert "ONBUILD" not in alpine


def test_a_registry_pin_records_the_config_blobs_triggers() -> None:
    registry = FakeRegistry("registry.test:5000")
    with_triggers = registry.store("registry.test:5000/team/base:1", {}, "linux/amd64")
    registry.configs[with_triggers.digest] = {"os": "linux", "config": {"OnBuild": ["COPY . /app"]}}
    without = registry.store("registry.test:5000/team/base:2", {"a": "b"}, "linux/amd64")
    resolver = Resolver(None, registry_factory=lambda host: cast(Registry, registry))
    assert resolver.resolve("registry.test:5000/team/base:1", "linux/amd64") == Pin(
        digest=with_triggers.digest, source="registry", onbuild=True
    )
    assert resolver.resolve("registry.test:5000/team/base:2", "linux/amd64") == Pin(
        digest=without.digest, source="registry"
    )
    registry.configs[without.digest] = {"config": {"OnBuild": []}}  # an empty list is no triggers
    assert resolver.resolve("registry.test:5000/team/base:2", "linux/amd64").onbuild is False


def test_a_digest_reference_takes_its_triggers_from_whoever_answers() -> None:
    # the registry it names: the index's entry for the platform
    resolver = Resolver(None, registry_factory=_IndexRegistry)  # type: ignore[arg-type]
    named = "registry.example.com:5000/team/base@sha256:" + "9" * 64
    assert resolver.resolve(named, "linux/arm64") == Pin(digest="sha256:" + "9" * 64, source="reference", onbuild=True)
    assert resolver.resolve(named, "linux/amd64").onbuild is False
    # the engine, for a reference in Docker's default registry (never asked)
    executor = FakeExecutor()
    digest_given = "debian@" + DIGEST_A
    executor.images[executor.add_image(digest_given)].onbuild = True
    assert Resolver(executor).resolve(digest_given, "linux/amd64") == Pin(
        digest=DIGEST_A, source="reference", onbuild=True
    )
    assert Resolver(executor).resolve(digest_given, "linux/arm64").onbuild is False  # the engine's is amd64
    assert Resolver(None).resolve(digest_given, "linux/amd64").onbuild is False  # nobody to ask
