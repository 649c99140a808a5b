"""``orchestrator lock``: pin every external base, per platform, in images.lock."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from orchestrator.cli.common import emit_json, engine_spec, handle_errors, load_workspace
from orchestrator.errors import UsageError


class LockOutput(StrEnum):
    text = "text"
    json = "json"


@handle_errors
def lock(
    ctx: typer.Context,
    references: Annotated[
        list[str] | None, typer.Argument(help="With --update: only these bases (default: every base)")
    ] = None,
    update: Annotated[bool, typer.Option("--update", help="Resolve pinned bases again (all, or those named)")] = False,
    output: Annotated[
        LockOutput,
        typer.Option("--output", "-o", help="text: a line per pin added, updated or dropped; json: one document"),
    ] = LockOutput.text,
) -> None:
    """Pin every external base to a digest per platform in images.lock (keeping existing pins).

    Bases are resolved from the registry their reference names, else from the local engine (bases
    imported here). Each pin records whether the image has ONBUILD triggers ("onbuild": true).
    Without --update, existing pins stay and only missing ones are added; pins no target uses are
    dropped.
    """
    from orchestrator.cli.engine import base_resolver
    from orchestrator.registry.pins import updated_lock
    from orchestrator.workspace.lockfile import LOCK_FILE, write_lock

    if references and not update:
        raise UsageError("naming bases re-resolves them: add --update (orchestrator lock --update REF...)")
    loaded = load_workspace(ctx)
    with base_resolver(engine_spec(ctx, loaded)) as resolver:
        new_lock, changes = updated_lock(
            loaded.graph, loaded.lock, resolver, update=(references or []) if update else None
        )
    wrote = write_lock(loaded.root, new_lock)
    pins = sum(1 for _ in new_lock.pins())
    if output is LockOutput.json:
        emit_json(
            {
                "changes": [
                    {
                        "reference": c.reference,
                        "platform": c.platform,
                        "old": c.old,
                        "new": c.new,
                        "onbuild": c.onbuild,
                    }
                    for c in changes
                ],
                "pins": pins,
                "written": wrote,
            }
        )
        return
    for change in changes:
        triggers = " (ONBUILD triggers: the whole context of its users is an input)" if change.onbuild else ""
        if change.old is None:
            typer.echo(f"pinned  {change.reference} {change.platform} {change.new}{triggers}")
        elif change.new is None:
            typer.echo(f"dropped {change.reference} {change.platform} (no target uses it)")
        elif change.old == change.new:
            now = "has ONBUILD triggers" if change.onbuild else "has no ONBUILD triggers any more"
            typer.echo(f"updated {change.reference} {change.platform} {change.new}: {now}")
        else:
            typer.echo(f"updated {change.reference} {change.platform} {change.old} -> {change.new}{triggers}")
    typer.echo(f"{LOCK_FILE}: {pins} pins, {'written' if wrote else 'unchanged'}")
