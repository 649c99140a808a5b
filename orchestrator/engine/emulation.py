"""Whether this machine can run a foreign platform's binaries: QEMU registered with binfmt_misc.

A build for another platform runs its ``RUN`` steps under QEMU user emulation, which the kernel
starts through a binfmt_misc entry (``qemu-aarch64`` for linux/arm64). The entry must carry the
``F`` flag (the interpreter is opened when registered), or a container, whose root file system
lacks the interpreter, cannot use it. The check runs before any build so that a missing emulator
is one clear message with the fix, not a failed ``RUN`` after minutes of work.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orchestrator.core.platforms import normalize
from orchestrator.errors import OrchestratorError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

# platform -> QEMU's name of the CPU (the binfmt entry is qemu-<name>)
_QEMU_CPU = {
    "linux/amd64": "x86_64",
    "linux/arm64": "aarch64",
    "linux/arm/v7": "arm",
    "linux/arm/v6": "arm",
    "linux/386": "i386",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
    "linux/riscv64": "riscv64",
    "linux/mips64le": "mips64el",
}

# What a CPU runs without emulation besides its own platform.
_NATIVE_TOO = {
    "linux/amd64": {"linux/386"},
    "linux/arm64": {"linux/arm/v7", "linux/arm/v6"},
}


class EmulationMissing(OrchestratorError):
    """A requested platform cannot run here: no QEMU emulator is registered for it (exit 2)."""


def emulator_problem(platform: str, native: str, binfmt_dir: Path = BINFMT_DIR) -> str | None:
    """Why ``platform`` cannot run on a ``native`` machine, or None when it can."""
    platform, native = normalize(platform), normalize(native)
    if platform == native or platform in _NATIVE_TOO.get(native, set()):
        return None
    cpu = _QEMU_CPU.get(platform)
    if cpu is None:
        return f"no QEMU emulator is known for {platform}"
    if not (binfmt_dir / "register").exists():
        return f"binfmt_misc is not mounted at {binfmt_dir}"
    entry = binfmt_dir / f"qemu-{cpu}"
    try:
        lines = entry.read_text().splitlines()
    except OSError:
        return f"no binfmt_misc entry {entry.name} (QEMU is not registered for {platform})"
    if not lines or lines[0].strip() != "enabled":
        return f"the binfmt_misc entry {entry.name} is disabled"
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:
        return f"the binfmt_misc entry {entry.name} lacks the F flag, so containers cannot use it"
    return None


def check_emulation(platforms: Iterable[str], native: str, binfmt_dir: Path = BINFMT_DIR) -> None:
    """Raise EmulationMissing, with the fix, if any of ``platforms`` cannot run on this machine."""
    problems = {}
    for platform in sorted(set(platforms)):
        problem = emulator_problem(platform, native, binfmt_dir)
        if problem is not None:
            problems[platform] = problem
    if not problems:
        return
    listed = "; ".join(f"{platform}: {problem}" for platform, problem in problems.items())
    cpus = " ".join(f"qemu-{_QEMU_CPU[p]}" for p in problems if p in _QEMU_CPU)
    fix = (
        "install QEMU's user emulators and register them (as root): "
        "apt-get install qemu-user-static binfmt-support; "
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc (if not mounted); "
        f"update-binfmts --enable {cpus}".rstrip()
    )
    raise EmulationMissing(f"cannot build for a platform this machine cannot run ({listed}); to fix: {fix}")
