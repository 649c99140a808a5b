"""Platform strings (``os/arch[/variant]``) and the host's own platform."""

from __future__ import annotations

import platform as _platform

_MACHINE_TO_ARCH = {
    "x86_64": "linux/amd64",
    "amd64": "linux/amd64",
    "aarch64": "linux/arm64",
    "arm64": "linux/arm64",
    "armv7l": "linux/arm/v7",
    "armv6l": "linux/arm/v6",
    "i386": "linux/386",
    "i686": "linux/386",
    "ppc64le": "linux/ppc64le",
    "s390x": "linux/s390x",
    "riscv64": "linux/riscv64",
}


def host_platform() -> str:
    machine = _platform.machine().lower()
    return _MACHINE_TO_ARCH.get(machine, f"linux/{machine}")


def normalize(platform: str) -> str:
    """``linux/arm64/v8`` is ``linux/arm64``; ``linux/x86_64`` is ``linux/amd64``."""
    parts = platform.lower().split("/")
    if len(parts) >= 2 and parts[1] in ("x86_64", "x86-64"):
        parts[1] = "amd64"
    if len(parts) >= 2 and parts[1] == "aarch64":
        parts[1] = "arm64"
    if parts[1:] == ["arm64", "v8"]:
        parts = parts[:2]
    return "/".join(parts)
