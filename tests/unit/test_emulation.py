"""The check that a foreign platform can run here, against a binfmt_misc directory of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.emulation import EmulationMissing, check_emulation, emulator_problem

ENABLED_F = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n"


def binfmt(tmp_path: Path, entries: dict[str, str]) -> Path:
    directory = tmp_path / "binfmt_misc"
    directory.mkdir()
    (directory / "register").write_text("")
    for name, text in entries.items():
        (directory / name).write_text(text)
    return directory


def test_native_and_compatible_platforms_need_no_emulator(tmp_path: Path) -> None:
    empty = binfmt(tmp_path, {})
    assert emulator_problem("linux/amd64", "linux/amd64", empty) is None
    assert emulator_problem("linux/x86_64", "linux/amd64", empty) is None
    assert emulator_problem("linux/386", "linux/amd64", empty) is None


def test_a_registered_emulator_with_the_f_flag_is_enough(tmp_path: Path) -> None:
    assert emulator_problem("linux/arm64", "linux/amd64", binfmt(tmp_path, {"qemu-aarch64": ENABLED_F})) is None


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ({}, "no binfmt_misc entry qemu-aarch64"),
        ({"qemu-aarch64": ENABLED_F.replace("enabled", "disabled")}, "is disabled"),
        ({"qemu-aarch64": ENABLED_F.replace("flags: PF", "flags: P")}, "lacks the F flag"),
    ],
)
def test_what_is_wrong_is_named(tmp_path: Path, entries: dict[str, str], expected: str) -> None:
    problem = emulator_problem("linux/arm64", "linux/amd64", binfmt(tmp_path, entries))
    assert problem is not None and expected in problem


def test_binfmt_misc_not_mounted(tmp_path: Path) -> None:
    problem = emulator_problem("linux/arm64", "linux/amd64", tmp_path)
    assert problem is not None and "not mounted" in problem


def test_unknown_platform(tmp_path: Path) -> None:
    problem = emulator_problem("linux/loong64", "linux/amd64", binfmt(tmp_path, {}))
    assert problem == "no QEMU emulator is known for linux/loong64"


def test_check_names_every_platform_and_the_fix(tmp_path: Path) -> None:
    directory = binfmt(tmp_path, {})
    with pytest.raises(EmulationMissing) as raised:
        check_emulation(["linux/arm64", "linux/amd64", "linux/s390x"], "linux/amd64", directory)
    message = str(raised.value)
    assert "linux/arm64: no binfmt_misc entry qemu-aarch64" in message
    assert "linux/s390x" in message and "linux/amd64:" not in message
    assert "apt-get install qemu-user-static binfmt-support" in message
    assert "update-binfmts --enable qemu-aarch64 qemu-s390x" in message
    assert raised.value.exit_code == 2
    check_emulation(["linux/amd64"], "linux/amd64", directory)  # nothing foreign: no error
