"""Platform strings (``os/arch[/variant]``): their one spelling, the valid ones, the host's own.

Every platform a user writes (BUILD files, ``workspace()``, ``--platform``, images.lock) goes
through ``canonical``, which spells it as containerd normalizes it and refuses what no engine
builds; what engines and registries report goes through ``normalize``, which never refuses:

    amd64, x86_64, linux/x86-64, linux/amd64/v1   -> linux/amd64
    arm64, aarch64, linux/arm64/v8                -> linux/arm64
    arm, armhf, linux/arm, linux/arm/7            -> linux/arm/v7
    armel, linux/arm/6                            -> linux/arm/v6
    i386, i686                                    -> linux/386
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Iterable

from orchestrator.errors import UsageError, did_you_mean

# The platforms Linux engines build and QEMU emulates (``docker buildx ls`` lists these).
KNOWN: tuple[str, ...] = (
    "linux/386",
    "linux/amd64",
    "linux/amd64/v2",
    "linux/amd64/v3",
    "linux/amd64/v4",
    "linux/arm/v5",
    "linux/arm/v6",
    "linux/arm/v7",
    "linux/arm64",
    "linux/loong64",
    "linux/mips64",
    "linux/mips64le",
    "linux/ppc64le",
    "linux/riscv64",
    "linux/s390x",
)
VALID_FORMS = (
    f"os/arch[/variant], one of {', '.join(KNOWN)}; an arch alone means linux "
    "(amd64 is linux/amd64) and aliases are accepted (x86_64, aarch64, arm64/v8, armhf, i386)"
)

# arch as written -> (arch, variant it implies, or None to keep the written one)
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
}
_ARCHES = frozenset(p.split("/")[1] for p in KNOWN)
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
    """The one spelling of ``platform`` (see the module docstring); anything unknown comes back as is.

    Lower case, an arch alone gets ``linux/``, aliases become their arch, a variant gets its ``v``,
    ``arm`` without a variant is ``arm/v7``, and the default variants (``amd64/v1``, ``arm64/v8``) go.
    """
    parts = platform.strip().lower().split("/")
    if len(parts) in (1, 2) and (parts[0] in _ARCHES or parts[0] in _ARCH_ALIASES):
        parts = ["linux", *parts]  # an arch alone, or arch/variant
    if len(parts) < 2 or len(parts) > 3 or not all(parts):
        return platform
    os_, arch, variant = parts[0], parts[1], parts[2] if len(parts) == 3 else None
    arch, implied = _ARCH_ALIASES.get(arch, (arch, None))
    variant = variant or implied
    if variant is not None and variant.isdigit():
        variant = f"v{variant}"
    if arch == "arm" and variant is None:
        variant = "v7"
    if (arch, variant) in (("amd64", "v1"), ("arm64", "v8")):
        variant = None
    return "/".join([os_, arch] if variant is None else [os_, arch, variant])


def canonical(platform: str, *, given_as: str = "") -> str:
    """``platform`` normalized; UsageError listing the valid forms when no engine builds it.

    ``given_as`` (``--platform``) starts the message, to say where the platform was written.
    """
    spelled = normalize(platform)
    if spelled in KNOWN:
        return spelled
    where = f"{given_as}: " if given_as else ""
    raise UsageError(f"{where}unknown platform {platform!r}{did_you_mean(spelled, KNOWN)}; valid: {VALID_FORMS}")


def canonical_all(platforms: Iterable[str], *, given_as: str = "") -> tuple[str, ...]:
    """Each platform ``canonical``, duplicates (``amd64`` and ``linux/amd64``) merged, in order."""
    return tuple(dict.fromkeys(canonical(p, given_as=given_as) for p in platforms))
