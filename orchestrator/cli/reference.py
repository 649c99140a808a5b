"""The CLI reference (docs/reference/cli.md), generated from the typer app so it cannot drift.

python -m orchestrator.cli.reference > docs/reference/cli.md
"""

from __future__ import annotations

import enum
from typing import Any

import typer.main

from orchestrator.cli.main import app

HEADER = """# CLI reference

Generated from the command itself by `python -m orchestrator.cli.reference`; a test fails when this
page and the command disagree.

Exit codes: 0 success, 1 a build failed (or `--push` could not push), 2 usage or environment error
(bad BUILD file, cycle, unknown target, daemon down, missing emulator, unpinned base with
`--locked`), 3 nothing matched, 4 an image test failed, 130 interrupted (Ctrl-C), 143 stopped
(SIGTERM). Errors print one `ERROR ...` block on standard error, without a traceback. See
[troubleshooting](../troubleshooting.md).
"""


def _param_row(param: Any) -> str:
    names = ", ".join(f"`{opt}`" for opt in param.opts)
    if param.param_type_name == "argument":
        names = f"`{param.name.upper()}`" + ("..." if getattr(param, "nargs", 1) == -1 else "")
    help_text = (getattr(param, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    default = param.default
    if isinstance(default, enum.Enum):
        default = default.value
    shown = (
        "" if default in (None, False, (), []) or param.param_type_name == "argument" else f" (default: `{default}`)"
    )
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        shown += "; one of " + ", ".join(f"`{member.value}`" for member in annotation)
    return f"| {names} | {help_text}{shown} |"


def _command(path: str, command: Any, out: list[str]) -> None:
    subcommands = getattr(command, "commands", None)
    if subcommands:
        if path:
            out += [f"## `orchestrator {path}`", "", (command.help or "").strip(), ""]
        for name in sorted(subcommands):
            _command(f"{path} {name}".strip(), subcommands[name], out)
        return
    params = [p for p in command.params if p.name not in ("help",)]
    out += [f"### `orchestrator {path}`", "", (command.help or "").strip(), ""]
    if params:
        out += ["| argument / option | meaning |", "|---|---|"]
        out += [_param_row(p) for p in params]
        out.append("")


def render() -> str:
    root = typer.main.get_command(app)
    out = [HEADER, "## Global options", "", "| option | meaning |", "|---|---|"]
    out += [_param_row(p) for p in root.params if p.name != "help"]
    out.append("")
    _command("", root, out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
