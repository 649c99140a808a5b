"""Planning fails early, as ``lock`` does, on an external base the engine holds only for another platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cache.store import Store
from orchestrator.pipeline.hermetic import BaseWrongPlatform
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.run import Pipeline
from orchestrator.registry.pins import LockError, Resolver, updated_lock
from orchestrator.workspace.loading import load
from orchestrator.workspace.lockfile import write_lock
from tests.fakes.executor import FakeExecutor
from tests.workspaces import ScratchWorkspace

TWO_PLATFORMS = 'workspace(platforms = ["linux/amd64", "linux/arm64"])\n'


def plan(ws: ScratchWorkspace, executor: FakeExecutor, tmp_path: Path) -> None:
    loaded = load(ws.root)
    with Store(tmp_path / "cache") as store:
        Pipeline(loaded, store, tmp_path / "cache", executor, BuildOptions()).plan(loaded.graph.select(["//..."]))


def test_a_base_the_engine_has_only_for_amd64_fails_planning_for_arm64(
    workspace: ScratchWorkspace, tmp_path: Path
) -> None:
    workspace.write(
        {
            "WORKSPACE": TWO_PLATFORMS,
            "base/BUILD": 'image(name = "company-base")\n',
            "base/Dockerfile": "FROM busybox:tutorial\nRUN true\n",
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM company-base\nCOPY --from=busybox:tutorial /bin/busybox /bin/\n",
        }
    )
    executor = FakeExecutor()
    executor.add_image("busybox:tutorial", platform="linux/amd64")
    with pytest.raises(BaseWrongPlatform) as caught:
        plan(workspace, executor, tmp_path)
    assert str(caught.value).startswith(
        "cannot build on busybox:tutorial for linux/arm64 (used by //app:app, //base:company-base): "
        "the engine's busybox:tutorial is for linux/amd64, not linux/arm64. "
    )
    assert caught.value.exit_code == 2
    assert executor.requests == []  # nothing was built first
    with pytest.raises(LockError, match="the engine's busybox:tutorial is for linux/amd64, not linux/arm64"):
        updated_lock(load(workspace.root).graph, None, Resolver(executor))


def test_a_base_for_every_platform_or_missing_or_pinned_plans(workspace: ScratchWorkspace, tmp_path: Path) -> None:
    workspace.write(
        {
            "WORKSPACE": 'workspace(platforms = ["linux/arm64"])\n',
            "base/BUILD": 'image(name = "company-base")\n',
            "base/Dockerfile": "FROM busybox:tutorial\n",
        }
    )
    plan(workspace, FakeExecutor(), tmp_path)  # not in the engine: the build names it
    executor = FakeExecutor()
    executor.add_image("busybox:tutorial", platform="linux/arm64")
    plan(workspace, executor, tmp_path)
    lock, _ = updated_lock(load(workspace.root).graph, None, Resolver(executor))
    write_lock(workspace.root, lock)
    executor.add_image("busybox:tutorial", platform="linux/amd64")  # the name moves; the pin stays
    plan(workspace, executor, tmp_path)


def test_a_from_platform_naming_the_engines_platform_is_not_an_error(
    workspace: ScratchWorkspace, tmp_path: Path
) -> None:
    workspace.write(
        {
            "WORKSPACE": 'workspace(platforms = ["linux/arm64"])\n',
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM --platform=linux/amd64 golang:1.22 AS build\nRUN true\nFROM scratch\n"
            "COPY --from=build /bin/true /true\n",
        }
    )
    executor = FakeExecutor()
    executor.add_image("golang:1.22", platform="linux/amd64")
    plan(workspace, executor, tmp_path)
