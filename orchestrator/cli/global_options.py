"""Global options before or after the command, as in Bazel and Pants.

    orchestrator -w BUILD.examples build //...
    orchestrator build //... -w BUILD.examples -vv

The root callback (``main.py``) takes them before the command. ``GlobalOptionsGroup``, the root's
click group, gives every command and group below it the same options, which take nothing to the
command's function (``expose_value=False``): their callbacks update the root's ``GlobalOptions``,
the value after the command winning (``-v`` counts both places; ``--engine`` given after the
command replaces those given before it). Click parses a command's
options after the root callback has run, so the root's values are there to override.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption

from orchestrator.cli.common import GlobalOptions

WORKSPACE_HELP = "Workspace root (default: walk up to WORKSPACE)"
CACHE_DIR_HELP = "Local cache directory (default: WORKSPACE's, else ~/.cache)"
VERBOSE_HELP = "More output (-vv more still)"
ENGINE_HELP = (
    "A Docker Engine to build on: unix:///path, tcp://host:port (TLS from the WORKSPACE engines entry "
    "of that URL) or ssh://user@host; repeat it to spread the build over several (they need a registry "
    "cache; the first is home: --load, tests, gc); replaces WORKSPACE's engines (default: them, else "
    "DOCKER_HOST, else the local socket)"
)
PREFIX = "global_"  # the parameter names of the copies after the command (the CLI reference skips them)


def _root_options(ctx: typer.Context) -> GlobalOptions:
    root = ctx.find_root()
    if not isinstance(root.obj, GlobalOptions):
        root.obj = GlobalOptions()
    return root.obj


def _set_workspace(ctx: typer.Context, _param: Any, value: str | None) -> None:
    if value is not None:
        _root_options(ctx).workspace = Path(value)


def _set_cache_dir(ctx: typer.Context, _param: Any, value: str | None) -> None:
    if value is not None:
        _root_options(ctx).cache_dir = value


def _add_verbose(ctx: typer.Context, _param: Any, value: int) -> None:
    if value:
        _root_options(ctx).verbose += value


def _set_engines(ctx: typer.Context, _param: Any, value: tuple[str, ...] | None) -> None:
    if value:
        _root_options(ctx).engines = tuple(value)


def _after_command_options() -> list[TyperOption]:
    return [
        TyperOption(
            param_decls=["--workspace", "-w", f"{PREFIX}workspace"],
            metavar="PATH",
            help=WORKSPACE_HELP,
            callback=_set_workspace,
            expose_value=False,
        ),
        TyperOption(
            param_decls=["--cache-dir", f"{PREFIX}cache_dir"],
            metavar="TEXT",
            help=CACHE_DIR_HELP,
            callback=_set_cache_dir,
            expose_value=False,
        ),
        TyperOption(
            param_decls=["--engine", f"{PREFIX}engine"],
            metavar="URL",
            multiple=True,
            help=ENGINE_HELP,
            callback=_set_engines,
            expose_value=False,
        ),
        TyperOption(
            param_decls=["--verbose", "-v", f"{PREFIX}verbose"],
            count=True,
            default=0,
            help=VERBOSE_HELP,
            callback=_add_verbose,
            expose_value=False,
        ),
    ]


def is_after_command_option(param: Any) -> bool:
    return str(getattr(param, "name", "")).startswith(PREFIX)


def _accept_global_options(command: Any) -> None:
    if not any(is_after_command_option(p) for p in command.params):
        command.params.extend(_after_command_options())
    for sub in getattr(command, "commands", {}).values():
        _accept_global_options(sub)


class GlobalOptionsGroup(TyperGroup):
    """The root command: every command and group below it takes the global options too."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in self.commands.values():
            _accept_global_options(command)
