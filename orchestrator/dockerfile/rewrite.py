"""Rewriting a Dockerfile for a build: rebinding image references, and the label instruction.

:func:`rebind` writes the copy of the Dockerfile that is sent to the engine, with references
replaced by exact images; every line stays in place. :func:`with_label_instruction` appends one
LABEL instruction to the built stage (one build step, however many labels).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from orchestrator.dockerfile.analysis import analyze
from orchestrator.dockerfile.lexer import (
    LITERAL_REF,
    Instruction,
    Word,
    copy_sources,
    dockerfile_error,
    escape_token,
    from_parts,
    open_end,
    read_instructions,
    split_lines,
)

# --- Rebinding ------------------------------------------------------------------------------------


def rebind(text: str, replacements: Mapping[int, str], *, path: str = "Dockerfile") -> str:
    """``text`` with the image reference of the instruction starting at each given line replaced.

    ``replacements`` maps an :attr:`ImageRef.line` to a literal reference. Only the reference's
    characters change: flags, ``AS`` names, comments and all line numbers stay as they were.
    """
    for new in replacements.values():
        if not LITERAL_REF.fullmatch(new):
            raise ValueError(f"replacement {new!r} is not a literal image reference")
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    lines = split_lines(text)
    edits: list[tuple[int, int, int, str]] = []  # (row, column, old length, new)
    stage_names: set[str] = set()  # the stages defined so far
    rebound: set[int] = set()
    for instruction in read_instructions(lines, escape_token(lines, path), path):
        if instruction.line in replacements:
            for raw, offset in _sites(instruction, stage_names, path):
                position = instruction.position(offset, offset + len(raw))
                if position is None:
                    raise dockerfile_error(
                        path, instruction.line, f"cannot rebind {raw!r}: a line continuation splits it"
                    )
                edits.append((*position, len(raw), replacements[instruction.line]))
            rebound.add(instruction.line)
        if instruction.keyword == "from":
            stage_names.update(word.lower() for word, _ in from_parts(instruction, path)[1][2:])
    if missing := sorted(set(replacements) - rebound):
        raise dockerfile_error(path, missing[0], f"no instruction starts at line {missing[0]}")
    for row, column, length, new in sorted(edits, reverse=True):
        lines[row] = lines[row][:column] + new + lines[row][column + length :]
    return bom + "\n".join(lines)


def _sites(instruction: Instruction, stage_names: Collection[str], path: str) -> list[Word]:
    """The raw image words (and offsets) that rebinding replaces in ``instruction``: one distinct value."""
    sites = from_parts(instruction, path)[1][:1] if instruction.keyword == "from" else copy_sources(instruction)
    # Literal stage names and indices are not images (an ARG-templated one cannot be told apart).
    images = [(raw, offset) for raw, offset in sites if not (raw.isdigit() or raw.lower() in stage_names)]
    if not images:
        message = f"no image reference to rebind in this {instruction.keyword.upper()}"
        raise dockerfile_error(path, instruction.line, message)
    if len(distinct := dict.fromkeys(raw for raw, _ in images)) > 1:
        message = f"cannot rebind: the line has several image references ({', '.join(distinct)})"
        raise dockerfile_error(path, instruction.line, message)
    return images


def _label_word(text: str, escape: str) -> str:
    """A double-quoted LABEL word: escape character, quote and ``$`` escaped (no variable expansion).

    A newline cannot be written on one line: it becomes the two characters ``\\n``.
    """
    for char in (escape, '"', "$"):  # the escape character first, so no escape is escaped twice
        text = text.replace(char, escape + char)
    return '"' + text.replace("\n", "\\n") + '"'


def with_label_instruction(
    text: str,
    labels: Mapping[str, str],
    *,
    path: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
) -> str:
    """``text`` with one ``LABEL`` instruction holding ``labels`` at the end of the built stage.

    Labels passed to the classic builder's API become one LABEL step each, and each step commits
    a container (about 0.1 s apiece); one instruction costs one step. It goes right before the
    next stage's FROM (or at the end), so no line the user wrote before it moves.

    A file whose last instruction runs into the end through a line continuation (``RUN echo hi \\``,
    maybe followed by blank or comment lines) would continue into the LABEL. Docker ends such an
    instruction at the end of the file, dropping the escape character; so does the copy: the
    escape character is removed from that line.
    """
    if not labels:
        return text
    info = analyze(text, path=path, build_args=build_args, target=target)
    lines = text.split("\n")  # as split_lines numbers them (a BOM stays on the first line)
    escape = escape_token(split_lines(text), path)
    words = (f"{_label_word(key, escape)}={_label_word(value, escape)}" for key, value in sorted(labels.items()))
    label = "LABEL " + " ".join(words)
    following = [s.line for s in info.stages if s.index == info.target_stage + 1]
    if following:
        at = following[0] - 1
        return "\n".join([*lines[:at], label, *lines[at:]])
    source = split_lines(text)
    row = open_end(source, read_instructions(source, escape, path), escape, path)
    if row is not None:
        body = lines[row].rstrip("\r").rstrip(" \t")
        lines[row] = body[:-1] + lines[row][len(body) :]  # what followed the escape character stays
    body = "\n".join(lines)
    return body + ("" if body.endswith("\n") or not body else "\n") + label + "\n"
