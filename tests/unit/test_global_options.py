"""Global options before or after the command (``orchestrator build //... -w DIR -vv``), as in Bazel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from orchestrator.cli import main
from orchestrator.cli.common import options
from orchestrator.cli.global_options import GlobalOptionsGroup
from orchestrator.cli.reference import render
from tests.workspaces import ScratchWorkspace


def probe_app() -> typer.Typer:
    """The real root callback over a command, and a group's command, that print the options they get."""
    app = typer.Typer(cls=GlobalOptionsGroup)
    app.callback()(main.main)
    group = typer.Typer()
    app.add_typer(group, name="query")

    def show(ctx: typer.Context, pattern: Annotated[str | None, typer.Argument()] = None) -> None:
        opts = options(ctx)
        typer.echo(f"{opts.workspace} {opts.cache_dir} {opts.verbose} {pattern}")

    app.command(name="show")(show)
    group.command(name="show")(show)
    return app


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["show"], "None None 0 None"),
        (["-w", "a", "--cache-dir", "c", "-v", "show"], "a c 1 None"),
        (["show", "x", "-w", "a", "--cache-dir", "c", "-vv"], "a c 2 x"),
        (["-w", "a", "--cache-dir", "c", "show", "-w", "b", "--cache-dir", "d"], "b d 0 None"),
        (["-v", "show", "--verbose", "-v"], "None None 3 None"),
        (["query", "show", "-w", "b", "-v"], "b None 1 None"),
        (["-w", "a", "query", "-w", "b", "show"], "b None 0 None"),
    ],
)
def test_after_the_command_a_global_option_wins_and_v_counts(args: list[str], printed: str) -> None:
    result = CliRunner().invoke(probe_app(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{printed}\n"


def walk(command: Any, path: str = "") -> list[tuple[str, Any]]:
    found = [(path, command)] if path else []
    for name, sub in getattr(command, "commands", {}).items():
        found += walk(sub, f"{path} {name}".strip())
    return found


def test_every_command_and_group_takes_the_global_options() -> None:
    for path, command in walk(typer.main.get_command(main.app)):
        opts = {opt for param in command.params for opt in param.opts}
        assert {"--workspace", "-w", "--cache-dir", "--verbose", "-v", "-h"} <= opts | {"-h"}, path
        result = CliRunner().invoke(main.app, [*path.split(), "-h"], catch_exceptions=False)
        assert result.exit_code == 0, (path, result.output)
        assert "--workspace" in result.stdout and "Traceback" not in result.output


def test_the_real_cli_takes_the_workspace_after_the_command(
    family: ScratchWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no WORKSPACE above it: only -w finds the family
    runner = CliRunner()
    before = runner.invoke(main.app, ["--cache-dir", str(family.cache_dir), "-w", str(family.root), "hash", "//..."])
    after = runner.invoke(main.app, ["hash", "//...", "-w", str(family.root), "--cache-dir", str(family.cache_dir)])
    assert before.exit_code == after.exit_code == 0, after.output
    assert after.stdout == before.stdout and after.stdout.count("\n") == 8


def test_a_wrong_workspace_after_the_command_is_the_one_reported(family: ScratchWorkspace, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = CliRunner().invoke(main.app, ["-w", str(family.root), "hash", "-w", str(missing)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"ERROR --workspace {missing}: no WORKSPACE file"), result.stderr
    assert "Traceback" not in result.output


def test_the_reference_lists_the_global_options_once() -> None:
    page = render()
    assert page.count("`--workspace`, `-w`") == 1
    assert "`orchestrator build //... -w BUILD.examples`" in page
