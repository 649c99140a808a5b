"""``orchestrator sign REF --key KEY``: sign an image already in a registry, as ``cosign sign --key`` does.

    REF -> its digest now -> a ``sha256-<hex>.sig`` signature of it (and of an index's platform
    manifests, and of the SBOM and provenance attestations attached to them)

Exit codes: 0 signed (or signed already), 2 a key that cannot be used, REF missing, the registry
unreachable or refusing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import handle_errors
from orchestrator.errors import UsageError

SIGN_PASSWORD_ENV = "ORCHESTRATOR_SIGN_PASSWORD"  # build_cmd's default too

RefArg = Annotated[str, typer.Argument(help="An image in a registry, e.g. 127.0.0.1:5000/company/base:1.0")]


@handle_errors
def sign(
    ref: RefArg,
    key: Annotated[Path, typer.Option("--key", metavar="KEY", help="ECDSA P-256 private key, PKCS#8 or SEC1 PEM")],
    password_env: Annotated[
        str,
        typer.Option(
            "--password-env", metavar="NAME", help="The environment variable holding an encrypted KEY's password"
        ),
    ] = SIGN_PASSWORD_ENV,
) -> None:
    """Sign REF (the manifest its tag names now) in cosign's format, with its platforms and attestations."""
    from orchestrator.pipeline.supply_sign import RegistryRef, sign_reference
    from orchestrator.registry.client import Registry
    from orchestrator.supply.signing import load_private_key

    parsed = RegistryRef.parse(ref)
    signing_key = load_private_key(key, password_env)
    with Registry(parsed.address) as registry:
        try:
            digest, signed = sign_reference(registry, parsed, signing_key)
        except ValueError as exc:  # a repository or tag a registry cannot hold
            raise UsageError(f"{ref}: {exc}") from None
    shown = f"{ref}@{digest}" if "@" not in ref else ref
    more = f" ({len(signed)} signatures added)" if signed else " (signed already)"
    typer.echo(f"signed {shown}{more}")
