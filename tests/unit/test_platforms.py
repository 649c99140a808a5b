"""Platforms: one spelling everywhere (BUILD files, workspace(), --platform, images.lock), unknown ones refused."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.platforms import KNOWN, canonical, canonical_all, normalize
from orchestrator.errors import UsageError, WorkspaceError
from orchestrator.workspace.lockfile import LOCK_FILE, parse_lock
from tests.workspaces import ScratchWorkspace

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("written", "spelled"),
    [
        ("amd64", "linux/amd64"),
        ("x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("LINUX/AMD64", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("arm64", "linux/arm64"),
        ("aarch64", "linux/arm64"),
        ("arm64/v8", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("armhf", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("armel", "linux/arm/v6"),
        ("i386", "linux/386"),
        ("s390x", "linux/s390x"),
    ],
)
def test_platforms_are_spelled_one_way(written: str, spelled: str) -> None:
    assert canonical(written) == spelled


@pytest.mark.parametrize(
    "written", ["linux/amd65", "windows/amd64", "linux", "linux/", "/amd64", "linux/arm64/v8/x", ""]
)
def test_an_unknown_platform_is_a_usage_error_listing_the_valid_forms(written: str) -> None:
    with pytest.raises(UsageError) as caught:
        canonical(written, given_as="--platform")
    message = str(caught.value)
    assert message.startswith(f"--platform: unknown platform {written!r}")
    assert "os/arch[/variant]" in message and all(p in message for p in KNOWN)


def test_a_near_miss_is_suggested() -> None:
    with pytest.raises(UsageError, match=r"unknown platform 'linux/amd65' \(did you mean 'linux/amd64'"):
        canonical("linux/amd65")


def test_normalize_never_refuses_what_engines_report() -> None:
    assert normalize("unknown/unknown") == "unknown/unknown"
    assert normalize("linux/arm64/v8") == "linux/arm64"


def test_duplicates_merge_keeping_the_first_order() -> None:
    assert canonical_all(["arm64/v8", "amd64", "linux/arm64", "linux/amd64"]) == ("linux/arm64", "linux/amd64")


# --- BUILD files ---------------------------------------------------------------------------------


def one_error(ws: ScratchWorkspace, *args: str) -> str:
    result = ws.run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("ERROR ") and result.stderr.count("ERROR ") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


@pytest.mark.parametrize(
    ("build", "where", "rule"),
    [
        ('image(\n    name = "app",\n    platforms = ["linux/amd65"],\n)\n', "app/BUILD:1:1", "image(name='app')"),
        (
            'rootfs_image(name = "os", tarball = "os.tar", platforms = ["amd64", "sparc"])\n',
            "app/BUILD:1:1",
            "rootfs_image(name='os')",
        ),
        (
            'image(name = "app")\n'
            'image_test(name = "t", image = ":app", metadata = {"user": "root"}, platforms = ["sparc"])\n',
            "app/BUILD:2:1",
            "image_test(name='t')",
        ),
    ],
)
def test_an_unknown_platform_in_a_build_file_is_a_located_load_error(
    workspace: ScratchWorkspace, build: str, where: str, rule: str
) -> None:
    workspace.write({"app/BUILD": build, "app/Dockerfile": "FROM scratch\n", "app/os.tar": "x"})
    message = one_error(workspace, "query", "buildorder")
    assert message.startswith(f"ERROR {where}"), message
    assert f"{rule}: attribute 'platforms': unknown platform" in message
    assert "valid: os/arch[/variant]" in message


def test_an_unknown_platform_in_workspace_is_a_load_error(workspace: ScratchWorkspace) -> None:
    workspace.write({"WORKSPACE": 'workspace(\n    platforms = ["linux/amd64", "lnux/arm64"],\n)\n'})
    message = one_error(workspace, "query", "buildorder")
    assert message.startswith("ERROR WORKSPACE:1:1"), message
    assert "workspace(): attribute 'platforms': unknown platform 'lnux/arm64'" in message


def test_build_file_platforms_are_normalized_and_merged(workspace: ScratchWorkspace) -> None:
    rule = 'image(name = "app", context = "ctx", dockerfile = "ctx/Dockerfile", platforms = {})\n'
    workspace.write(
        {
            "app/BUILD": rule.format('["amd64", "arm64/v8", "linux/amd64", "aarch64"]'),
            "app/ctx/Dockerfile": "FROM scratch\n",
        }
    )
    spelled_otherwise = workspace.keys()
    assert sorted(spelled_otherwise) == ["//app:app linux/amd64", "//app:app linux/arm64"]
    workspace.write({"app/BUILD": rule.format('["linux/amd64", "linux/arm64"]')})
    assert workspace.keys() == spelled_otherwise


def test_workspace_platforms_are_normalized(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "WORKSPACE": 'workspace(platforms = ["x86_64", "linux/arm64/v8"])\n',
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM scratch\n",
        }
    )
    assert sorted(workspace.keys()) == ["//app:app linux/amd64", "//app:app linux/arm64"]


# --- --platform ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["build", "test"])
def test_an_unknown_platform_option_is_a_usage_error(family: ScratchWorkspace, command: str) -> None:
    message = one_error(family, command, "--platform", "linux/amd64", "--platform", "linux/amd65")
    assert message.startswith("ERROR --platform: unknown platform 'linux/amd65' (did you mean 'linux/amd64'"), message
    assert "valid: os/arch[/variant]" in message


# --- images.lock ---------------------------------------------------------------------------------


def lock_text(platforms: dict[str, str]) -> str:
    pins = {platform: {"digest": digest, "source": "registry"} for platform, digest in platforms.items()}
    return json.dumps({"version": 1, "bases": {"alpine:3.19": pins}})


def test_lock_platforms_are_normalized_and_merged() -> None:
    lock = parse_lock(lock_text({"linux/arm64/v8": DIGEST, "arm64": DIGEST, "amd64": OTHER}))
    assert lock.digests() == {("alpine:3.19", "linux/arm64"): DIGEST, ("alpine:3.19", "linux/amd64"): OTHER}


def test_a_lock_pinning_one_platform_twice_differently_is_refused() -> None:
    with pytest.raises(WorkspaceError, match=r"images.lock: alpine:3.19 is pinned twice for linux/arm64"):
        parse_lock(lock_text({"linux/arm64/v8": DIGEST, "linux/arm64": OTHER}))


def test_an_unknown_platform_in_the_lock_is_an_error_naming_the_file(family: ScratchWorkspace) -> None:
    (family.root / LOCK_FILE).write_text(lock_text({"linux/amd65": DIGEST}))
    message = one_error(family, "query", "buildorder")
    assert message.startswith("ERROR images.lock: alpine:3.19: unknown platform 'linux/amd65'"), message


def test_a_pin_written_another_way_pins_the_key(family: ScratchWorkspace) -> None:
    (family.root / LOCK_FILE).write_text(lock_text({"linux/amd64": DIGEST}))
    canonical_keys = family.keys("//apps/web")
    (family.root / LOCK_FILE).write_text(lock_text({"x86_64": DIGEST}))
    assert family.keys("//apps/web") == canonical_keys
    (family.root / LOCK_FILE).unlink()
    assert family.keys("//apps/web") != canonical_keys
