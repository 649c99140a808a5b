"""``orchestrator lint``: hadolint plus the family's own checks, per target."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from orchestrator.cli.common import emit_json, engine_spec, handle_errors, load_workspace
from orchestrator.lint import Level

EXIT_FINDINGS = 1


class LintOutput(StrEnum):
    text = "text"
    json = "json"


@handle_errors
def lint(
    ctx: typer.Context,
    patterns: Annotated[list[str] | None, typer.Argument(help="Target patterns (default //...)")] = None,
    output: Annotated[
        LintOutput,
        typer.Option("--output", "-o", help="text: path:line:col: LEVEL RULE message (//pkg:target) lines; json"),
    ] = LintOutput.text,
    show_ignored: Annotated[
        bool, typer.Option("--show-ignored", help="Also list the findings lint_ignore (or the family) silenced")
    ] = False,
    fail_on: Annotated[
        Level, typer.Option("--fail-on", help="Exit 1 when a finding at this level or above is left")
    ] = Level.error,
) -> None:
    """Lint the Dockerfiles of the selected targets: hadolint's rules and the family checks.

    ORC001 floating external base, ORC002 root final stage, ORC003 missing OCI labels, ORC004 large
    context without .dockerignore, ORC005 external base neither pinned, nor in the engine, nor in
    the registry it names (info when that registry cannot be reached), ORC006 unpinned external
    base with ONBUILD triggers (in the engine), ORC900 unused lint_ignore entry. Silence a rule for
    a target with image(..., lint_ignore = {"RULE": "reason"}). Exit 1 when a finding at --fail-on
    or above is left.
    """
    loaded = load_workspace(ctx)
    from orchestrator.cli import engine as cli_engine
    from orchestrator.lint.report import lint as run_lint  # here: other commands need not import it
    from orchestrator.lint.report import to_json, to_text

    labels = loaded.graph.select(patterns or [])
    with cli_engine.base_resolver(engine_spec(ctx, loaded)) as resolver:
        report = run_lint(loaded.root, loaded.graph, labels, lock=loaded.lock, bases=resolver)
    if output is LintOutput.json:
        emit_json(to_json(report))
    else:
        sys.stdout.write(to_text(report, show_ignored=show_ignored))
    if report.fails(fail_on):
        raise typer.Exit(EXIT_FINDINGS)
