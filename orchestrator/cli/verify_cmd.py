"""``orchestrator verify REF --key PUB [--require sbom,provenance]``: for CI, before deploying REF.

Exit codes: 0 verified (one line: ``verified REF@sha256:... (signature, sbom, provenance)``), 1 a
check failed (one line saying which: ``no signature for ...``, ``signature does not match ...``,
``no provenance attestation for ...``), 2 a key that cannot be read, REF missing, the registry
unreachable or refusing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.build_cmd import attestation_names
from orchestrator.cli.common import handle_errors
from orchestrator.cli.sign_cmd import RefArg
from orchestrator.errors import EXIT_BUILD_FAILED, UsageError


@handle_errors
def verify(
    ref: RefArg,
    key: Annotated[
        Path, typer.Option("--key", metavar="PUB", help="The signer's public key (PEM, as cosign public-key prints)")
    ],
    require: Annotated[
        str | None,
        typer.Option(
            "--require",
            metavar="KINDS",
            help="Attestations that must be attached and signed, comma-separated: sbom, provenance "
            "(for an index: on each of its platform manifests)",
        ),
    ] = None,
) -> None:
    """Check that REF's image is signed by PUB (and has the required attestations); exit 1 when not."""
    from orchestrator.pipeline.supply_sign import RegistryRef
    from orchestrator.pipeline.supply_verify import verify_reference
    from orchestrator.registry.client import Registry
    from orchestrator.supply.signing import load_public_key

    required = attestation_names([require or ""], "--require")
    parsed = RegistryRef.parse(ref)
    public = load_public_key(key)
    with Registry(parsed.address) as registry:
        try:
            verdict = verify_reference(registry, parsed, public, required)
        except ValueError as exc:  # a repository or tag a registry cannot hold
            raise UsageError(f"{ref}: {exc}") from None
    if not verdict.ok:
        typer.echo(f"ERROR {verdict.message}", err=True)
        raise typer.Exit(EXIT_BUILD_FAILED)
    typer.echo(verdict.message)
