"""``workspace(...)`` in the WORKSPACE file, checked and turned into WorkspaceSettings."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from orchestrator.core.engines import TLS_FILES, EngineSpec, url_problem
from orchestrator.core.model import ATTESTATION_CHOICES, EXECUTOR_CHOICES, WorkspaceSettings
from orchestrator.errors import BuildFileError, did_you_mean
from orchestrator.workspace.buildfile.rules import (
    ANY_LIST,
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
    "engines": ANY_LIST,
    "attestations": OPT_STR_LIST,
    "scan": OPT_STR,
    "scan_timeout": OPT_NUMBER,
}
KEY_DIGESTS = ("xxh3", "sha256")
ENGINE_FIELDS = ("url", "jobs", "platforms", "tls")


def settings_from_kwargs(args: tuple[Any, ...], kwargs: dict[str, Any], root: Path | None = None) -> WorkspaceSettings:
    """The settings ``workspace(**kwargs)`` gives; ``root`` resolves the engines' relative ``tls`` directories."""
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
        engines=_engines(kwargs.get("engines"), root or Path.cwd()),
        attestations=_attestations(kwargs.get("attestations")),
        scan=_scan(kwargs.get("scan")),
        scan_timeout_s=_positive(kwargs, "scan_timeout", 1800.0),
    )


def _engines(entries: list[Any] | None, root: Path) -> tuple[EngineSpec, ...]:
    """``engines = [{"url": ..., "jobs": N, "platforms": [...], "tls": "dir"}, ...]``, each field checked."""
    specs: list[EngineSpec] = []
    for index, entry in enumerate(entries or ()):
        where = f"workspace(): engines[{index}]"
        if not isinstance(entry, dict):
            raise BuildFileError(
                f'{where} must be a dict like {{"url": "tcp://host:2376", "tls": "certs"}}, got {type(entry).__name__}'
            )
        for key in entry:
            if key not in ENGINE_FIELDS:
                raise BuildFileError(
                    f"{where}: unknown field {key!r}{did_you_mean(str(key), list(ENGINE_FIELDS))}; "
                    f"valid fields: {', '.join(ENGINE_FIELDS)}"
                )
        url = entry.get("url")
        if not isinstance(url, str):
            raise BuildFileError(f"{where}: url must be a string (unix://, tcp:// or ssh://), got {url!r}")
        problem = url_problem(url)
        if problem is not None:
            raise BuildFileError(f"{where}: url: {problem}")
        if any(spec.url == url for spec in specs):
            raise BuildFileError(f"{where}: the engine {url} is listed twice")
        jobs = entry.get("jobs")
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise BuildFileError(f"{where}: jobs must be a whole number of at least 1, got {jobs!r}")
        platforms = entry.get("platforms")
        if platforms is not None and not (isinstance(platforms, list) and all(isinstance(p, str) for p in platforms)):
            raise BuildFileError(f"{where}: platforms must be a list of strings, got {platforms!r}")
        specs.append(
            EngineSpec(
                url=url,
                jobs=jobs,
                platforms=platforms_attr(platforms, where) or (),
                tls=_tls_dir(entry.get("tls"), url, root, where),
            )
        )
    return tuple(specs)


def _tls_dir(value: Any, url: str, root: Path, where: str) -> str | None:
    """The TLS directory (relative to the workspace root, or absolute), checked to hold the three files."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BuildFileError(f"{where}: tls must be a directory (a string), got {value!r}")
    if not url.startswith("tcp://"):
        raise BuildFileError(f"{where}: tls goes with a tcp:// engine only, not {url}")
    directory = Path(os.path.normpath(root / value))
    if not directory.is_dir():
        raise BuildFileError(f"{where}: tls {value!r} is not a directory (looked for {directory})")
    missing = [name for name in TLS_FILES if not (directory / name).is_file()]
    if missing:
        raise BuildFileError(
            f"{where}: tls {value!r} lacks {', '.join(missing)} (the directory holds ca.pem, the CA that "
            "signed the engine's certificate, and this client's cert.pem and key.pem)"
        )
    return str(directory)


def _attestations(names: list[str] | None) -> tuple[str, ...]:
    """``attestations = ["sbom"]``: names from ATTESTATION_CHOICES, each once (only ``sbom`` is made yet)."""
    for name in names or ():
        if name not in ATTESTATION_CHOICES:
            raise BuildFileError(
                f"workspace(): attestations must be among {', '.join(ATTESTATION_CHOICES)}, got {name!r}"
                f"{did_you_mean(name, list(ATTESTATION_CHOICES))}"
            )
    if len(set(names or ())) != len(names or ()):
        raise BuildFileError(f"workspace(): attestations lists a name twice: {names!r}")
    return tuple(names or ())


def _scan(command: str | None) -> str | None:
    """``scan = "trivy image --exit-code 1 {ref}"``: a command line naming the image as ``{ref}``."""
    if command is None:
        return None
    example = '"trivy image --exit-code 1 {ref}"'
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise BuildFileError(f"workspace(): scan {command!r} is not a command line: {exc}") from None
    if not argv:
        raise BuildFileError(f"workspace(): scan is an empty command; give one like {example}")
    if not any("{ref}" in arg for arg in argv[1:]):
        raise BuildFileError(
            f"workspace(): scan {command!r} does not name the image: put {{ref}} where the scanner takes it, "
            f"as in {example}"
        )
    return command


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
