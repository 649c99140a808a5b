"""``orchestrator build`` and ``orchestrator explain``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import (
    EngineTimeoutOpt,
    ExecutorOpt,
    Output,
    RegistryOpt,
    RemoteCacheWriteOpt,
    RequireRegistryOpt,
    handle_errors,
)
from orchestrator.cli.sign_cmd import SIGN_PASSWORD_ENV
from orchestrator.core.model import ATTESTATION_CHOICES
from orchestrator.core.platforms import canonical_all
from orchestrator.errors import UsageError, did_you_mean


def attestation_names(values: list[str] | None, given_as: str) -> list[str]:
    """``--attest sbom --attest provenance`` or ``--attest sbom,provenance``: names of ATTESTATION_CHOICES."""
    names = [name.strip() for value in values or () for name in value.split(",") if name.strip()]
    for name in names:
        if name not in ATTESTATION_CHOICES:
            raise UsageError(
                f"{given_as} takes {', '.join(ATTESTATION_CHOICES)}, got {name!r}"
                f"{did_you_mean(name, list(ATTESTATION_CHOICES))}"
            )
    return list(dict.fromkeys(names))


class PlanOutput(StrEnum):
    text = "text"
    json = "json"
    github_matrix = "github-matrix"


@handle_errors
def build(
    ctx: typer.Context,
    patterns: Annotated[list[str] | None, typer.Argument(help="Target patterns (default //...)")] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Builds at once (default: the engine's jobs, else cores)"),
    ] = None,
    keep_going: Annotated[
        bool, typer.Option("--keep-going/--fail-fast", help="Go on with independent branches after a failure")
    ] = True,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Build every selected node again, without the engine's layer cache (parents stay cached)"
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (cached or to build, and why)")] = False,
    output: Annotated[
        PlanOutput | None,
        typer.Option(
            "--output", "-o", help="With --dry-run: the plan as text (default), JSON, or a GitHub Actions job matrix"
        ),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only targets affected since this git revision")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write a JSON report here")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here")] = None,
    platform: Annotated[
        list[str] | None,
        typer.Option("--platform", help="Only this platform's nodes, e.g. linux/arm64 (repeatable; default: all)"),
    ] = None,
    registry: RegistryOpt = None,
    require_registry: RequireRegistryOpt = None,
    remote_cache_write: RemoteCacheWriteOpt = True,
    push: Annotated[
        bool, typer.Option("--push", help="Push the selection's human tags (one index per multi-platform tag)")
    ] = False,
    load: Annotated[
        bool, typer.Option("--load", help="Pull the selection's registry hits too, so the engine has every image")
    ] = False,
    locked: Annotated[
        bool, typer.Option("--locked", help="Fail unless images.lock pins every base used, and nothing else (CI)")
    ] = False,
    engine_timeout: EngineTimeoutOpt = None,
    executor: ExecutorOpt = None,
    attest: Annotated[
        list[str] | None,
        typer.Option(
            "--attest",
            metavar="KINDS",
            help="After the build, make and cache these attestations of each image built or cached, and with "
            "--push attach them to the images pushed: sbom, provenance (comma-separated or repeated; added to "
            "WORKSPACE's attestations)",
        ),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            metavar="KEY",
            help="With --push: sign each image, index and attestation pushed, as cosign does (an ECDSA P-256 "
            "PKCS#8 or SEC1 PEM private key)",
        ),
    ] = None,
    sign_key_password_env: Annotated[
        str,
        typer.Option(
            "--sign-key-password-env",
            metavar="NAME",
            help="The environment variable holding the password of an encrypted --sign-key",
        ),
    ] = SIGN_PASSWORD_ENV,
    rescan: Annotated[
        bool,
        typer.Option(
            "--rescan",
            help="Run WORKSPACE's scan again on every image of the run, cached ones too, ignoring the passes "
            "cached (vulnerability databases change)",
        ),
    ] = False,
) -> None:
    """Build the selected targets and everything they need: in order, in parallel, only what changed."""
    from orchestrator.cli.build_run import BuildCommand, run_build

    key = None
    if sign_key is not None:
        if not push:
            raise UsageError("--sign-key signs what --push publishes: add --push (or sign later: orchestrator sign)")
        from orchestrator.supply.signing import load_private_key  # cryptography: only when signing

        key = load_private_key(sign_key, sign_key_password_env)
    command = BuildCommand(
        patterns=patterns,
        jobs=jobs,
        keep_going=keep_going,
        no_cache=no_cache,
        dry_run=dry_run,
        since=since,
        report=report,
        platforms=canonical_all(platform or (), given_as="--platform"),
        registry=registry,
        require_registry=require_registry,
        remote_cache_write=remote_cache_write,
        push=push,
        load=load,
        locked=locked,
        output=None if output is None else output.value,
        junit=junit,
        engine_timeout_s=engine_timeout,
        executor=None if executor is None else executor.value,
        attest=tuple(attestation_names(attest, "--attest")),
        sign_key=key,
        rescan=rescan,
    )
    run_build(ctx, command)


@handle_errors
def explain(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A label or an image reference a target produces")],
    output: Annotated[
        Output, typer.Option("--output", "-o", help="label: a line per node and per changed entry; json")
    ] = Output.label,
) -> None:
    """Why TARGET would rebuild: the manifest entries that differ from its last recorded build."""
    from orchestrator.cli.build_run import run_explain

    run_explain(ctx, target, output)
