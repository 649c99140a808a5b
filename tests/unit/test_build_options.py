"""``orchestrator build`` options that contradict each other fail before anything runs (exit 2)."""

from __future__ import annotations

import pytest

from tests.workspaces import ScratchWorkspace


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--push"], "--push needs a registry"),
        (["--push", "--registry", "127.0.0.1:1", "--no-remote-cache-write"], "cannot go with --no-remote-cache-write"),
        (["--push", "--registry", "127.0.0.1:1", "--platform", "linux/amd64"], "drop --platform"),
    ],
)
def test_contradicting_options_are_usage_errors(family: ScratchWorkspace, args: list[str], message: str) -> None:
    result = family.run("build", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_platform_matching_no_node_exits_3(family: ScratchWorkspace) -> None:
    result = family.run("build", "--dry-run", "--platform", "linux/s390x")
    assert result.exit_code == 3
    assert "no selected target is built for linux/s390x" in result.output


def test_dry_run_with_a_registry_that_is_down_warns_and_plans_locally(family: ScratchWorkspace) -> None:
    from tests.registry_server import free_port

    result = family.run("build", "--dry-run", "--registry", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 0
    assert "unavailable, building locally" in result.output
    assert "0 in the registry cache" in result.output
