"""``build`` fails before anything is built on an unpinned external base found nowhere (BaseNotFound).

Found means: in the engine (any platform), or in the registry the reference names. A registry that
cannot be reached is no error (the build's pull says what is wrong); a pinned base is not looked
for here (``check_pinned_images``); only nodes to build need their bases.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import cast

import pytest

from orchestrator.cache.store import Store
from orchestrator.engine.api import ImageInfo
from orchestrator.engine.local import Engine
from orchestrator.pipeline.hermetic import BaseNotFound
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.run import Pipeline, Request, run
from orchestrator.pipeline.summary import BuildSummary, NodeStatus
from orchestrator.registry.cache import RemoteCache
from orchestrator.registry.client import Registry
from orchestrator.workspace.loading import load
from orchestrator.workspace.lockfile import Lock, Pin, write_lock
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.workspaces import ScratchWorkspace

IN_REGISTRY = "registry.test:5000/team/base:1"
TYPO = "alpine:3.91"


class Inspecting(FakeExecutor):
    """Counts the inspects of each reference."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.inspected: dict[str, int] = {}

    def inspect(self, reference: str) -> ImageInfo | None:
        self.inspected[reference] = self.inspected.get(reference, 0) + 1
        return super().inspect(reference)


class Registries:
    """The fake registries a build looks for bases in, by host; records every host asked for."""

    def __init__(self, found: Mapping[str, FakeRegistry] | None = None) -> None:
        self.found = dict(found or {})
        self.asked: list[str] = []

    def __call__(self, host: str) -> Registry:
        self.asked.append(host)
        # Only Registry.lookup (and close) are used to look for a base; the fake implements them.
        return cast(Registry, self.found.get(host) or FakeRegistry(host, up=False))


def write_family(ws: ScratchWorkspace, base: str) -> None:
    """//base:company-base on busybox, and two images on ``base`` (one through COPY --from)."""
    ws.write(
        {
            "base/BUILD": 'image(name = "company-base")\n',
            "base/Dockerfile": "FROM busybox:tutorial\nRUN true\n",
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": f"FROM company-base\nCOPY --from={base} /etc/os-release /etc/\n",
            "tool/BUILD": 'image(name = "tool")\n',
            "tool/Dockerfile": f"FROM {base}\nRUN true\n",
        }
    )


def build(
    ws: ScratchWorkspace, executor: FakeExecutor, registries: Registries | None = None, **kwargs: object
) -> BuildSummary:
    """What ``pipeline.run`` does, with the registries the bases are looked for in given."""
    loaded = load(ws.root)
    with Store(ws.cache_dir) as store:
        pipeline = Pipeline(
            loaded,
            store,
            ws.cache_dir,
            executor,
            BuildOptions(),
            base_registries=registries or Registries(),
            **kwargs,  # type: ignore[arg-type]
        )
        plan = pipeline.plan(loaded.graph.select([]))
        pipeline.check_bases(plan)
        return pipeline.run(plan)


def run_build(ws: ScratchWorkspace, executor: FakeExecutor, *, dry_run: bool = False) -> None:
    loaded = load(ws.root)
    with Store(ws.cache_dir) as store:
        run(
            loaded=loaded,
            store=store,
            cache_dir=ws.cache_dir,
            request=Request(labels=loaded.graph.select([]), options=BuildOptions(), dry_run=dry_run),
            engine=lambda: Engine(executor=executor, images=executor.references()),
        )


def test_a_typo_in_a_base_fails_before_anything_is_built_naming_it_and_its_users(
    workspace: ScratchWorkspace,
) -> None:
    write_family(workspace, TYPO)
    executor = Inspecting(bases=["busybox:tutorial"])
    with pytest.raises(BaseNotFound) as caught:
        run_build(workspace, executor)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert message.startswith(
        f"cannot find the base image {TYPO} (used by //app:app, //tool:tool): the engine does not have it "
        "(Docker's default registry is not asked: pull it, or name a registry). Nothing was built: "
        "fix the reference if it is a typo"
    )
    assert "docker pull" in message and "orchestrator lock" in message
    assert executor.requests == []  # not even //base:company-base, which does not use it
    assert executor.inspected[TYPO] <= 2  # once to plan (platform), once to look for it; not per user


def test_a_dry_run_plans_whatever_the_engine_lacks(workspace: ScratchWorkspace) -> None:
    write_family(workspace, TYPO)
    executor = FakeExecutor(bases=["busybox:tutorial"])
    run_build(workspace, executor, dry_run=True)  # the machine that plans may never build
    assert executor.requests == []


def test_the_cli_exits_2_with_the_message(workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import build_run

    write_family(workspace, TYPO)
    executor = FakeExecutor(bases=["busybox:tutorial"])
    monkeypatch.setattr(build_run, "connect", lambda spec=None: Engine(executor=executor, images=executor.references()))
    result = workspace.run("build")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"ERROR cannot find the base image {TYPO} (used by //app:app, //tool:tool)")
    assert executor.requests == []


def test_a_base_only_in_the_registry_it_names_builds(workspace: ScratchWorkspace) -> None:
    write_family(workspace, IN_REGISTRY)
    registry = FakeRegistry("registry.test:5000")
    registry.store(IN_REGISTRY, {}, "linux/amd64")
    registries = Registries({"registry.test:5000": registry})
    summary = build(workspace, FakeExecutor(bases=["busybox:tutorial"]), registries)
    assert summary.exit_code == 0
    assert registries.asked == ["registry.test:5000"] and registry.closed


def test_a_base_the_registry_it_names_lacks_fails(workspace: ScratchWorkspace) -> None:
    write_family(workspace, IN_REGISTRY)
    registries = Registries({"registry.test:5000": FakeRegistry("registry.test:5000")})
    executor = FakeExecutor(bases=["busybox:tutorial"])
    with pytest.raises(BaseNotFound, match=r"the registry registry\.test:5000 has no team/base:1"):
        build(workspace, executor, registries)
    assert executor.requests == []


def test_a_registry_that_cannot_be_reached_is_left_to_the_build(workspace: ScratchWorkspace) -> None:
    write_family(workspace, IN_REGISTRY)
    registries = Registries()  # every registry is down
    summary = build(workspace, FakeExecutor(bases=["busybox:tutorial"]), registries)
    assert summary.exit_code == 0  # the fake builds; a real engine's pull would name the problem
    assert registries.asked == ["registry.test:5000"]


def test_a_pinned_base_is_not_looked_for(workspace: ScratchWorkspace) -> None:
    write_family(workspace, IN_REGISTRY)
    pin = Pin(digest="sha256:" + "a" * 64, source="registry")
    write_lock(workspace.root, Lock({IN_REGISTRY: {"linux/amd64": pin}}))
    registries = Registries()
    executor = Inspecting(bases=["busybox:tutorial"])
    assert build(workspace, executor, registries).exit_code == 0
    assert registries.asked == [] and IN_REGISTRY not in executor.inspected


def test_cached_nodes_need_no_base(workspace: ScratchWorkspace) -> None:
    write_family(workspace, TYPO)
    executor = FakeExecutor(bases=["busybox:tutorial", TYPO])
    assert build(workspace, executor).exit_code == 0
    executor.remove(TYPO)  # docker image prune -a: the base goes, the built images stay
    executor.remove("busybox:tutorial")
    again = build(workspace, executor)
    assert again.exit_code == 0 and {r.status for r in again.reports} == {NodeStatus.CACHED}
    workspace.write({"tool/Dockerfile": f"FROM {TYPO}\nRUN echo changed\n"})
    with pytest.raises(BaseNotFound, match=rf"{TYPO} \(used by //tool:tool\)"):  # only what is to build
        build(workspace, executor)


def test_nodes_the_registry_cache_holds_need_no_base(workspace: ScratchWorkspace, tmp_path: Path) -> None:
    write_family(workspace, TYPO)
    cache = FakeRegistry()
    first = FakeExecutor(bases=["busybox:tutorial", TYPO], registry=cache)
    assert build(workspace, first, remote=RemoteCache(cache)).exit_code == 0
    elsewhere = ScratchWorkspace(root=workspace.root, cache_dir=tmp_path / "other-cache")
    second = FakeExecutor(registry=cache)  # another machine: no base, no cache, the registry cache
    summary = build(elsewhere, second, remote=RemoteCache(cache))
    assert summary.exit_code == 0 and second.requests == []
