"""``workspace(...)`` in the WORKSPACE file, checked and turned into WorkspaceSettings."""

from __future__ import annotations

from typing import Any

from orchestrator.core.model import EXECUTOR_CHOICES, WorkspaceSettings
from orchestrator.errors import BuildFileError, did_you_mean
from orchestrator.workspace.buildfile.rules import (
    OPT_BOOL,
    OPT_NUMBER,
    OPT_STR,
    OPT_STR_LIST,
    check_attrs,
    platforms_attr,
)

WORKSPACE_ATTRS = {
    "name": OPT_STR,
    "platforms": OPT_STR_LIST,
    "registry": OPT_STR,
    "require_registry": OPT_BOOL,
    "hermetic": OPT_BOOL,
    "cache_dir": OPT_STR,
    "key_digest": OPT_STR,
    "eval_timeout": OPT_NUMBER,
    "eval_memory_mb": OPT_NUMBER,
    "engine_timeout": OPT_NUMBER,
    "external_images": OPT_STR_LIST,
    "executor": OPT_STR,
}
KEY_DIGESTS = ("xxh3", "sha256")


def settings_from_kwargs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> WorkspaceSettings:
    check_attrs("workspace", WORKSPACE_ATTRS, args, {"name": kwargs.get("name") or "workspace", **kwargs})
    key_digest = kwargs.get("key_digest") or "xxh3"
    if key_digest not in KEY_DIGESTS:
        raise BuildFileError(f"workspace(): key_digest must be one of {', '.join(KEY_DIGESTS)}, got {key_digest!r}")
    executor = kwargs.get("executor") or "auto"
    if executor not in EXECUTOR_CHOICES:
        raise BuildFileError(
            f"workspace(): executor must be one of {', '.join(EXECUTOR_CHOICES)}, got {executor!r}"
            f"{did_you_mean(executor, list(EXECUTOR_CHOICES))}"
        )
    return WorkspaceSettings(
        eval_timeout_s=_positive(kwargs, "eval_timeout", 60.0),
        eval_memory_mb=int(_positive(kwargs, "eval_memory_mb", 2048)),
        engine_timeout_s=_positive(kwargs, "engine_timeout", 120.0),
        name=kwargs.get("name") or "",
        platforms=platforms_attr(kwargs.get("platforms"), "workspace()") or (),
        registry=kwargs.get("registry"),
        require_registry=bool(kwargs.get("require_registry")),
        hermetic=bool(kwargs.get("hermetic")),
        cache_dir=kwargs.get("cache_dir"),
        key_digest=key_digest,
        external_images=_external_images(kwargs.get("external_images")),
        executor=executor,
    )


def _external_images(patterns: list[str] | None) -> tuple[str, ...]:
    """``repository:tag`` patterns (shell-style globs); one without a tag could never match."""
    for pattern in patterns or ():
        if ":" not in pattern.rpartition("/")[2]:
            raise BuildFileError(
                f"workspace(): external_images entries are repository:tag patterns (globs allowed, "
                f'"debian:*-slim"), got {pattern!r}; add the tag, or ":*" for every tag'
            )
    return tuple(patterns or ())


def _positive(kwargs: dict[str, Any], attr: str, default: float) -> float:
    value = kwargs.get(attr)
    if value is None:
        return default
    if value <= 0:
        raise BuildFileError(f"workspace(): {attr} must be a positive number, got {value!r}")
    return float(value)
