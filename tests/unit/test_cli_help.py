"""``--help`` and ``-h`` of every command and subcommand render, exit 0, and show no traceback."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from orchestrator.cli.main import app


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The root, every group and every command, walked from the click tree typer builds."""
    paths = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*path, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_the_walk_finds_commands_and_subcommands() -> None:
    assert {("build",), ("test",), ("explain",), ("query",), ("query", "deps"), ("query", "outdated")} <= set(COMMANDS)


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "orchestrator")
def test_help_renders(path: tuple[str, ...], flag: str) -> None:
    result = CliRunner().invoke(app, [*path, flag])
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout.startswith(f"Usage: orchestrator {' '.join(path)}".rstrip())
    assert "-h, --help" in result.stdout


@pytest.mark.parametrize("command", ["build", "test"])
def test_registry_help_shows_its_brackets_as_written(command: str) -> None:
    # rich read "host[:port][/prefix]" as markup and crashed (MarkupError) before it printed anything
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "host[:port][/prefix]" in " ".join(result.stdout.split())
