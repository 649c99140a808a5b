"""docs/reference/cli.md is generated from the typer app; it must not drift."""

from __future__ import annotations

from pathlib import Path

import typer.main

from orchestrator.cli.global_options import is_after_command_option
from orchestrator.cli.main import app
from orchestrator.cli.reference import render

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md"


def _all_options(command: object, path: str = "") -> list[tuple[str, str]]:
    found = []
    for param in getattr(command, "params", []):
        if is_after_command_option(param):  # the global options, documented once, at the top
            continue
        found += [(path, opt) for opt in param.opts if opt.startswith("-") and opt != "--help"]
    for name, sub in getattr(command, "commands", {}).items():
        found += _all_options(sub, f"{path} {name}".strip())
    return found


def test_reference_is_current() -> None:
    assert REFERENCE.read_text() == render(), "regenerate: python -m orchestrator.cli.reference > docs/reference/cli.md"


def test_every_option_of_every_command_is_documented() -> None:
    text = REFERENCE.read_text()
    options = _all_options(typer.main.get_command(app))
    assert options
    for path, option in options:
        section = text.split(f"`orchestrator {path}`")[1] if path else text
        assert f"`{option}`" in section.split("\n### ")[0], f"{option} of '{path}' is missing from {REFERENCE}"
