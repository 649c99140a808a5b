"""``orchestrator sbom``: the SBOM (CycloneDX JSON) of a target's image on one platform.

    key (no engine) -> the store's SBOM of that key, printed
                    -> else build what is needed (the build pipeline of ``orchestrator build``),
                       read the image's layers from the engine (``docker save``), store, print

The JSON goes to stdout, the build's display and notices to stderr. Exit codes as ``build``'s:
1 when the image failed to build, 2 usage or engine errors.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from orchestrator.cli.common import (
    EngineTimeoutOpt,
    ExecutorOpt,
    RegistryOpt,
    RemoteCacheWriteOpt,
    RequireRegistryOpt,
    connecting,
    engine_specs,
    handle_errors,
    load_workspace,
    options,
    stderr_console,
)


@handle_errors
def sbom(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A label or an image reference a target produces")],
    platform: Annotated[
        str | None,
        typer.Option("--platform", help="The platform's image, e.g. linux/arm64 (default: the target's first)"),
    ] = None,
    registry: RegistryOpt = None,
    require_registry: RequireRegistryOpt = None,
    remote_cache_write: RemoteCacheWriteOpt = True,
    engine_timeout: EngineTimeoutOpt = None,
    executor: ExecutorOpt = None,
) -> None:
    """Print the SBOM (CycloneDX JSON) of TARGET's image, building it first if needed."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.cache.store import Store
    from orchestrator.cli.session import run_on_console, sigterm_stops_cleanly
    from orchestrator.core.platforms import canonical_all, normalize
    from orchestrator.engine.local import closed_at_end, connect
    from orchestrator.errors import UsageError
    from orchestrator.pipeline.attest import cached_sbom, image_sbom
    from orchestrator.pipeline.options import BuildOptions
    from orchestrator.pipeline.run import Pipeline, Request, remote_cache
    from orchestrator.report.console import print_summary

    loaded = load_workspace(ctx)
    label = loaded.graph.resolve(target)
    nodes = loaded.graph.nodes_of(label)
    if platform is None:  # the first the target (else WORKSPACE) declares; the graph sorts them
        declared = loaded.graph.targets[label].platforms or loaded.workspace.settings.platforms or ()
        node = next((n for p in declared for n in nodes if n.platform == normalize(p)), nodes[0])
    else:
        wanted = canonical_all([platform], given_as="--platform")[0]
        found = [n for n in nodes if n.platform == wanted]
        if not found:
            raise UsageError(
                f"{label} is not built for {wanted}; its platforms: {', '.join(n.platform for n in nodes)}"
            )
        node = found[0]
    verbose = options(ctx).verbose
    specs = engine_specs(ctx, loaded)
    spec = specs[0] if specs else None  # the home engine: --load brings the image there
    build_options = BuildOptions(
        jobs=(spec.jobs if spec is not None else None) or os.cpu_count() or 1,
        keep_going=False,
        platforms=(node.platform,),
        load=True,  # an image the registry cache holds is pulled: its layers are read from the engine
        engine_timeout_s=engine_timeout or loaded.workspace.settings.engine_timeout_s,
        executor=None if executor is None else executor.value,
    )
    cache_dir = loaded.workspace.cache_dir(options(ctx).cache_dir)
    with Store(cache_dir) as store:
        keys = Pipeline(loaded, store, cache_dir, None, build_options).compute_keys([label])
        key = next(k.key for k in keys if k.node == node)
        known = cached_sbom(store, node, key)
        if known is not None:
            if verbose:
                typer.echo(f"sbom: {node} (key {key}) from the cache", err=True)
            typer.echo(known.text, nl=False)
            return
        remote = remote_cache(loaded, registry, write=remote_cache_write, required=require_registry)
        console = stderr_console()
        with (
            sigterm_stops_cleanly(),
            ThreadPoolExecutor(max_workers=1) as pool,
            closed_at_end(connecting(pool, specs, connect)) as engine_future,
        ):
            result = run_on_console(
                console,
                loaded=loaded,
                store=store,
                cache_dir=cache_dir,
                request=Request(labels=[label], options=build_options),
                engine=engine_future.result,
                remote=remote,
            )
            summary = result.summary
            assert summary is not None
            if summary.exit_code != 0 or verbose:
                print_summary(console, summary, verbose=verbose)
            if summary.exit_code != 0:
                raise typer.Exit(summary.exit_code)
            report = summary.by_node()[node]
            image = report.image_id or report.tags[0]
            made = image_sbom(store, engine_future.result().home.executor, node, report.key, image)
    if verbose:
        source = "from the cache" if made.cached else "read from the image's layers"
        typer.echo(f"sbom: {node} (key {made.key}) {source}", err=True)
    typer.echo(made.text, nl=False)
