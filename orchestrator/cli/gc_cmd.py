"""``orchestrator gc``: remove the content tags this workspace no longer needs (``pipeline/gc.py``)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import engine_spec, handle_errors, load_workspace, options
from orchestrator.errors import UsageError

if TYPE_CHECKING:
    from orchestrator.pipeline.gc import GcResult


@handle_errors
def gc(
    ctx: typer.Context,
    keep: Annotated[
        int, typer.Option("--keep", min=0, help="Built keys kept per target and platform, besides the current one")
    ] = 3,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="Clean this registry too, host[:port][/prefix] (its content tags, by the same rule); "
            "without it only the engine is cleaned",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be removed; remove nothing")] = False,
) -> None:
    """Remove the key-<key> content tags of this workspace's targets that are no longer needed.

    Kept per target and platform: the current key, the --keep most recently built keys, and every
    image a human tag names. Everything else tagged key-... in the targets' repositories is untagged
    in the engine and, with --registry, deleted from the registry (by digest, only when nothing kept
    refers to it; run the registry's garbage-collect afterwards to free the blobs).
    """
    from orchestrator.cache.store import Store
    from orchestrator.engine.local import connect
    from orchestrator.pipeline.gc import gc as collect_garbage
    from orchestrator.registry.client import Registry

    loaded = load_workspace(ctx)
    with ExitStack() as stack:
        store = stack.enter_context(Store(loaded.workspace.cache_dir(options(ctx).cache_dir)))
        engine = connect(engine_spec(ctx, loaded))
        stack.callback(engine.executor.close)
        try:
            remote = stack.enter_context(Registry(registry)) if registry else None
        except ValueError as exc:
            raise UsageError(f"--registry: {exc}") from None
        # The engine also names what it pushed to WORKSPACE's registry (host/repository:key-...).
        workspace_registry = loaded.workspace.settings.registry
        mirrors = [Registry(workspace_registry)] if workspace_registry and workspace_registry != registry else []
        result = collect_garbage(
            loaded=loaded,
            store=store,
            executor=engine.executor,
            registry=remote,
            mirrors=mirrors,
            keep=keep,
            dry_run=dry_run,
        )
    _print(result, registry)


def _print(result: GcResult, registry: str | None) -> None:
    plan = result.plan
    verb = "would remove" if result.dry_run else "removed"
    for tag in plan.untag:
        typer.echo(f"{verb} {tag.reference}  ({tag.node})")
    for deletion in plan.deletions:
        for tag in deletion.tags:
            typer.echo(f"{verb} {tag.reference}@{deletion.digest}  ({tag.node})")
    for tag, why in plan.left:
        typer.echo(f"kept {tag.reference}: {why}")
    images = f"{plan.engine_images_deleted} image{'s' if plan.engine_images_deleted != 1 else ''}"
    if result.engine_freed is None:
        typer.echo(
            f"engine: {len(plan.untag)} tags to remove, {images} to delete "
            f"({_size(plan.engine_size)} by docker images SIZE; shared layers make the saving smaller)"
        )
    else:
        typer.echo(
            f"engine: {len(plan.untag)} tags removed, {images} deleted, {_size(result.engine_freed)} freed "
            "(image layer storage before and after)"
        )
    if registry:
        tags = sum(len(d.tags) for d in plan.deletions)
        typer.echo(
            f"registry {registry}: {tags} tags {'to remove' if result.dry_run else 'removed'} "
            f"({len(plan.deletions)} manifests); up to {_size(plan.registry_bytes)} for the registry's "
            "garbage-collect to reclaim"
        )


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count} bytes"
