"""The ``orchestrator`` command: global options and the command tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator import __version__
from orchestrator.cache import store
from orchestrator.cli import (
    build_cmd,
    gc_cmd,
    graph_cmd,
    hash_cmd,
    init_cmd,
    lint_cmd,
    lock_cmd,
    query_cmd,
    sbom_cmd,
    sign_cmd,
    test_cmd,
    verify_cmd,
)
from orchestrator.cli.common import GlobalOptions, print_warning
from orchestrator.cli.global_options import (
    CACHE_DIR_HELP,
    ENGINE_HELP,
    VERBOSE_HELP,
    WORKSPACE_HELP,
    GlobalOptionsGroup,
)

app = typer.Typer(
    name="orchestrator",
    help="Build families of container images: in dependency order, in parallel, only what changed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=GlobalOptionsGroup,  # the global options after the command too
    # Help texts are plain text: as rich markup, "host[:port][/prefix]" was a broken closing tag.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every subcommand
)
app.add_typer(query_cmd.app, name="query")
app.command(name="graph")(graph_cmd.graph)
app.command(name="hash")(hash_cmd.hash_)
app.command(name="build")(build_cmd.build)
app.command(name="explain")(build_cmd.explain)
app.command(name="lock")(lock_cmd.lock)
app.command(name="lint")(lint_cmd.lint)
app.command(name="test")(test_cmd.test)
app.command(name="sbom")(sbom_cmd.sbom)
app.command(name="sign")(sign_cmd.sign)
app.command(name="verify")(verify_cmd.verify)
app.command(name="init")(init_cmd.init)
app.command(name="gc")(gc_cmd.gc)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orchestrator {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help=WORKSPACE_HELP)] = None,
    cache_dir: Annotated[str | None, typer.Option("--cache-dir", help=CACHE_DIR_HELP)] = None,
    engine: Annotated[list[str] | None, typer.Option("--engine", metavar="URL", help=ENGINE_HELP)] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help=VERBOSE_HELP)] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version")
    ] = False,
) -> None:
    ctx.obj = GlobalOptions(workspace=workspace, cache_dir=cache_dir, verbose=verbose, engines=tuple(engine or ()))
    store.set_warning_handler(print_warning)  # a quarantined local cache: one WARNING line


def run() -> None:
    app()
