"""A registry cache that refuses us (401/403) is an ERROR, and ``required`` makes an unusable one fail the build."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from orchestrator.cache.store import Store
from orchestrator.engine.api import TransferFailed
from orchestrator.errors import EXIT_BUILD_FAILED, UsageError
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.run import Pipeline, remote_cache
from orchestrator.pipeline.summary import BuildSummary, NodeStatus
from orchestrator.registry.cache import Level, RegistryRequired, RemoteCache
from orchestrator.registry.client import RegistryAuthError, RemoteImage
from orchestrator.workspace.loading import load
from tests.fakes.executor import FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.workspaces import ScratchWorkspace

DENIED = "denied: requested access to the resource is denied"


class DeniedRegistry(FakeRegistry):
    """Answers every lookup 401, as a registry that wants credentials we do not have."""

    def lookup_many(
        self, wanted: Sequence[tuple[str, str]], *, workers: int = 8
    ) -> dict[tuple[str, str], RemoteImage | None]:
        raise RegistryAuthError(f"the registry at {self.address} refused looking up: HTTP 401 UNAUTHORIZED")


class PushFailsRegistry(FakeRegistry):
    """Lets us read; every push fails with ``why``, as the engine words it."""

    def __init__(self, why: str = DENIED) -> None:
        super().__init__()
        self.why = why

    def store(self, reference: str, labels: Mapping[str, str], platform: str) -> RemoteImage:
        raise TransferFailed(f"push of {reference} failed: {self.why}")


def build(ws: ScratchWorkspace, remote: RemoteCache, cache_dir: Path) -> tuple[BuildSummary, FakeExecutor]:
    loaded = load(ws.root)
    executor = FakeExecutor(registry=remote.registry)  # type: ignore[arg-type]
    with Store(cache_dir) as store:
        pipeline = Pipeline(loaded, store, cache_dir, executor, BuildOptions(jobs=2), remote=remote)
        return pipeline.run(pipeline.plan(loaded.graph.select([]))), executor


def test_a_refusing_registry_is_one_error_and_a_local_build(family: ScratchWorkspace, tmp_path: Path) -> None:
    remote = RemoteCache(DeniedRegistry())
    summary, executor = build(family, remote, tmp_path / "a")
    assert summary.exit_code == 0
    assert {r.status for r in summary.reports} == {NodeStatus.BUILT}
    [notice] = remote.notices
    assert notice.level is Level.ERROR
    assert "registry cache registry.test:5000 refused access" in notice.message and "HTTP 401" in notice.message
    assert summary.warnings == ()  # printed once, as an ERROR, not again as a warning
    assert executor.pushed == []
    remote.check_required()  # not required: nothing to raise


@pytest.mark.parametrize("registry", [DeniedRegistry(), FakeRegistry(up=False)], ids=["401", "down"])
def test_a_required_registry_that_cannot_be_used_fails_before_building(
    family: ScratchWorkspace, tmp_path: Path, registry: FakeRegistry
) -> None:
    remote = RemoteCache(registry, required=True)
    with pytest.raises(RegistryRequired, match=r"registry.test:5000 is required .* cannot be used") as raised:
        build(family, remote, tmp_path / "a")
    assert raised.value.exit_code == EXIT_BUILD_FAILED


def test_a_refused_push_is_one_error_and_no_more_pushes(family: ScratchWorkspace, tmp_path: Path) -> None:
    remote = RemoteCache(PushFailsRegistry())
    summary, _ = build(family, remote, tmp_path / "a")
    assert summary.exit_code == 0
    [notice] = remote.notices
    assert notice.level is Level.ERROR and "refused the push" in notice.message and DENIED in notice.message
    assert remote.push_refused is not None
    remote.check_required()


def test_a_required_registry_refusing_a_push_fails_after_the_run(family: ScratchWorkspace, tmp_path: Path) -> None:
    remote = RemoteCache(PushFailsRegistry(), required=True)
    summary, _ = build(family, remote, tmp_path / "a")
    assert summary.exit_code == 0  # the images are built; the CLI then asks check_required
    with pytest.raises(RegistryRequired, match=r"refused the push of registry.test:5000/"):
        remote.check_required()


def test_a_failed_push_of_another_kind_stays_a_warning_but_fails_a_required_registry(
    family: ScratchWorkspace, tmp_path: Path
) -> None:
    remote = RemoteCache(PushFailsRegistry("blob upload unknown"), required=True)
    summary, _ = build(family, remote, tmp_path / "a")
    assert {n.level for n in remote.notices} == {Level.WARNING}
    assert summary.warnings and all("blob upload unknown" in w for w in summary.warnings)
    with pytest.raises(RegistryRequired, match="blob upload unknown"):
        remote.check_required()


def test_required_follows_the_workspace_unless_the_option_says(workspace: ScratchWorkspace) -> None:
    workspace.write({"WORKSPACE": 'workspace(registry = "127.0.0.1:5000", require_registry = True)\n'})
    loaded = load(workspace.root)
    assert loaded.workspace.settings.require_registry is True
    for option, expected in ((None, True), (False, False), (True, True)):
        remote = remote_cache(loaded, None, required=option)
        assert remote is not None and remote.required is expected
        remote.close()


def test_required_without_a_registry_is_a_usage_error(workspace: ScratchWorkspace) -> None:
    loaded = load(workspace.root)
    assert remote_cache(loaded, None) is None
    with pytest.raises(
        UsageError, match=r"registry cache is required .* set registry= in WORKSPACE or pass --registry"
    ):
        remote_cache(loaded, None, required=True)


def test_require_registry_option_without_a_registry_is_a_usage_error(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'image(name = "app")\n', "app/Dockerfile": "FROM scratch\n"})
    result = workspace.run("build", "--dry-run", "--require-registry")
    assert result.exit_code == 2, result.output
    assert "ERROR a registry cache is required (--require-registry" in result.output
