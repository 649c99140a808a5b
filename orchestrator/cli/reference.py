"""The CLI reference (docs/reference/cli.md), generated from the typer app so it cannot drift.

python -m orchestrator.cli.reference > docs/reference/cli.md
"""

from __future__ import annotations

import enum
from typing import Any

import typer.main

from orchestrator.cli.global_options import is_after_command_option
from orchestrator.cli.main import app

HEADER = """# CLI reference

Generated from the command itself by `python -m orchestrator.cli.reference`; a test fails when this
page and the command disagree.

Exit codes: 0 success, 1 a build failed (or `--push` could not push), 2 usage or environment error
(bad BUILD file, cycle, unknown target, daemon down, missing emulator, a base found nowhere,
unpinned base with `--locked`), 3 nothing matched, 4 an image test failed, 130 interrupted
(Ctrl-C), 143 stopped (SIGTERM). Errors print one `ERROR ...` block on standard error, without a traceback. See
[troubleshooting](../troubleshooting.md).
"""

OUTPUTS = """Commands that print data take `--output`/`-o`; any other value is a usage error (exit 2) that
lists these. `json` prints one JSON document on standard output; listing commands default to
`label`, one label (or one item) a line. Results are files rather than `--output`: `build
--report` (JSON) and `--junit`, `test --junit`; `build --output` shapes the plan `--dry-run`
prints."""


GLOBALS = """Before the command or after it, as in Bazel and Pants: `orchestrator -w BUILD.examples build //...`
is `orchestrator build //... -w BUILD.examples`. After the command, a value wins over the one before
it; `-v` counts both (`-vv`: more still)."""


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
    params = [p for p in command.params if p.name != "help" and not is_after_command_option(p)]
    out += [f"### `orchestrator {path}`", "", (command.help or "").strip(), ""]
    if params:
        out += ["| argument / option | meaning |", "|---|---|"]
        out += [_param_row(p) for p in params]
        out.append("")


def _outputs(path: str, command: Any) -> list[str]:
    """One row per command with ``--output``: its values and the default."""
    subcommands = getattr(command, "commands", None)
    if subcommands:
        return [row for name in sorted(subcommands) for row in _outputs(f"{path} {name}".strip(), subcommands[name])]
    rows = []
    for param in command.params:
        if "--output" in param.opts:
            values = [str(v) for v in param.type.choices]
            default = values[0] if param.default is None else str(getattr(param.default, "value", param.default))
            rows.append(f"| `{path}` | {', '.join(f'`{v}`' for v in values)} | `{default}` |")
    return rows


def render() -> str:
    root = typer.main.get_command(app)
    out = [HEADER, "## Global options", "", GLOBALS, "", "| option | meaning |", "|---|---|"]
    out += [_param_row(p) for p in root.params if p.name != "help"]
    out += ["", "## Output formats", "", OUTPUTS, "", "| command | `--output`, `-o` | default |", "|---|---|---|"]
    out += _outputs("", root)
    out.append("")
    _command("", root, out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
