"""Reading a Dockerfile's text the way BuildKit's frontend reads it (moby/buildkit ``frontend/dockerfile``).

Parser directives (``# escape=``, ``# syntax=``) only at the very top; comment and blank lines
dropped, also inside a continued instruction; a line ending in an escaped escape character not
continued; an instruction continued into the end of the file ended there; words split with the
file's escape character; heredoc bodies skipped. Instructions keep where each piece of their text
came from, so the analysis can name a line and the rewrite can edit one in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import DockerfileError, Location

STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")

_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]+)")
_HEREDOC_QUOTING = re.compile(r"""["'\\]""")
_HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})
PLAIN = re.compile(r"""[^$'"\\`]*""")
LITERAL_REF = re.compile(r"""[^\s$'"\\`,]+""")
_MOUNT_FIELD = re.compile(r"[^,]+")

Word = tuple[str, int]  # a word and its offset in the instruction's text


def _word_pattern(escape: str) -> re.Pattern[str]:
    """A shell-like word: quoted parts and escaped characters do not split it (BuildKit's parseWords)."""
    e = re.escape(escape)
    return re.compile(rf"""(?:[^\s"'{e}]+|{e}.|{e}$|"(?:[^"{e}]|{e}.)*(?:"|$)|'[^']*(?:'|$))+""")


_WORDS = {escape: _word_pattern(escape) for escape in ("\\", "`")}  # by escape character


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # lower-case
    text: str  # the logical line: continuations joined, comment lines dropped
    line: int  # 1-based line of its first physical line
    pieces: tuple[tuple[int, int, int], ...]  # (offset in text, 0-based physical line, column)
    escape: str  # the file's escape character

    def position(self, start: int, end: int) -> tuple[int, int] | None:
        """The physical (line index, column) of ``text[start:end]``, if it lies on one line."""
        for k, (offset, row, column) in enumerate(self.pieces):
            stop = self.pieces[k + 1][0] if k + 1 < len(self.pieces) else len(self.text)
            if offset <= start < stop:
                return (row, column + start - offset) if end <= stop else None
        return None


def dockerfile_error(path: str, line: int | None, message: str) -> DockerfileError:
    return DockerfileError(message, location=Location(path, line))


# --- Reading the text ---------------------------------------------------------------------------


def decode(data: bytes, *, path: str) -> str:
    """A Dockerfile's bytes as text; bytes that are not UTF-8 are an error naming the place."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[start : exc.start].decode("utf-8", "replace")) + 1
        message = f"not valid UTF-8 (byte 0x{data[exc.start]:02x}): Dockerfiles are read as UTF-8; save it as UTF-8"
        raise DockerfileError(message, location=Location(path, line, column)) from None


def read(file: Path, *, path: str) -> str:
    """The text of the Dockerfile at ``file`` (:func:`decode`); ``path`` names it in errors."""
    return decode(file.read_bytes(), path=path)


def split_lines(text: str) -> list[str]:
    # Split on "\n" only, as Go's line scanner does; a trailing "\r" is ignored where it matters.
    return text.removeprefix("\ufeff").split("\n")


def escape_token(lines: list[str], path: str) -> str:
    """The escape character set by the parser directives at the top (default backslash)."""
    escape, seen = "\\", set()
    for row, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if match is None or match[1].lower() not in _DIRECTIVES:
            break
        name = match[1].lower()
        if name in seen:
            raise dockerfile_error(path, row + 1, f"only one {name} parser directive can be used")
        if name == "escape" and match[2] not in ("\\", "`"):
            raise dockerfile_error(path, row + 1, f"invalid escape directive {match[2]!r}: must be \\ or `")
        seen.add(name)
        escape = match[2] if name == "escape" else escape
    return escape


def syntax_directive(text: str) -> str | None:
    """The frontend image a ``# syntax=<image>`` parser directive at the top names, if any.

    BuildKit runs that image as the Dockerfile's frontend; the classic builder ignores the line.
    """
    for line in split_lines(text):
        match = _DIRECTIVE.match(line.strip())
        if match is None or match[1].lower() not in _DIRECTIVES:
            return None
        if match[1].lower() == "syntax":
            return match[2]
    return None


def read_instructions(lines: list[str], escape: str, path: str) -> list[Instruction]:
    result: list[Instruction] = []
    row = 0
    while row < len(lines):
        instruction, row = _read_instruction(lines, row, escape)
        if instruction is not None:
            result.append(instruction)
            if instruction.keyword in _HEREDOC_KEYWORDS and "<<" in instruction.text:
                row = _skip_heredocs(instruction, lines, row, path)
    return result


def continues_line(line: str, escape: str) -> bool:
    r"""Whether ``line`` (trailing blanks stripped) goes on on the next line, as BuildKit reads it.

    It ends in the escape character, unless that is escaped itself: ``RUN echo a\\`` ends there
    (``parser.go``: ``([^\\])\\[ \t]*$|^\\[ \t]*$``; Docker 20.10's classic builder agrees).
    """
    return line.endswith(escape) and not line[:-1].endswith(escape)


def is_blank_or_comment(line: str) -> bool:
    stripped = line.lstrip()
    return not stripped or stripped[0] == "#"


def _read_instruction(lines: list[str], row: int, escape: str) -> tuple[Instruction | None, int]:
    """The instruction starting at ``lines[row]`` (None for a blank or comment line), and the next row."""
    first = lines[row].rstrip("\r")
    if is_blank_or_comment(first):
        return None, row + 1
    body = first.lstrip()
    start, column, offset = row, len(first) - len(body), 0
    parts: list[str] = []
    pieces: list[tuple[int, int, int]] = []
    while True:
        stripped = body.rstrip(" \t")
        continued = continues_line(stripped, escape)
        piece = stripped[:-1] if continued else body
        pieces.append((offset, row, column))
        parts.append(piece)
        offset += len(piece)
        row += 1
        # Comment and blank lines inside a continuation are dropped and do not end it.
        while continued and row < len(lines) and is_blank_or_comment(lines[row]):
            row += 1
        if not continued or row >= len(lines):
            break
        body, column = lines[row].rstrip("\r"), 0
    text = "".join(parts)
    keyword = _WORDS[escape].search(text)
    if keyword is None:
        return None, row
    instruction = Instruction(keyword[0].lower(), text, start + 1, tuple(pieces), escape)
    return instruction, row


def _skip_heredocs(instruction: Instruction, lines: list[str], row: int, path: str) -> int:
    """Skip the bodies of the instruction's heredocs (``<<EOF``, ``<<-"EOF"``, ...), one after another."""
    for word, _ in split_words(instruction):
        match = _HEREDOC.fullmatch(word)
        if match is None or not (name := _HEREDOC_QUOTING.sub("", match[3])):
            continue
        while True:
            if row >= len(lines):
                raise dockerfile_error(
                    path, instruction.line, f"unterminated heredoc <<{name}: no line {name!r} ends it"
                )
            body = lines[row].rstrip("\r")
            row += 1
            if (body.lstrip("\t") if match[2] else body) == name:  # <<- strips leading tabs
                break
    return row


def split_words(instruction: Instruction) -> list[Word]:
    """The words after the instruction keyword, each with its offset in the instruction's text."""
    return [(match[0], match.start()) for match in _WORDS[instruction.escape].finditer(instruction.text)][1:]


def _split_flags(words: list[Word]) -> tuple[dict[str, list[Word]], list[Word]]:
    """Leading ``--name=value`` flags (value and its offset, by name) and the remaining words."""
    flags: dict[str, list[Word]] = {}
    for k, (word, offset) in enumerate(words):
        if not word.startswith("--") or word == "--":
            return flags, words[k + (word == "--") :]
        name, _, value = word[2:].partition("=")
        flags.setdefault(name, []).append((value, offset + 3 + len(name)))
    return flags, []


def from_parts(instruction: Instruction, path: str) -> tuple[dict[str, list[Word]], list[Word]]:
    """The flags and the ``<image> [AS <name>]`` words of a FROM, checked."""
    flags, args = _split_flags(split_words(instruction))
    if not args:
        raise dockerfile_error(
            path, instruction.line, "FROM without an image: FROM [--platform=<p>] <image> [AS <name>]"
        )
    if len(args) not in (1, 3) or (len(args) == 3 and args[1][0].lower() != "as"):
        words = " ".join(word for word, _ in args)
        raise dockerfile_error(path, instruction.line, f"FROM {words!r}: expected <image> [AS <name>]")
    if len(args) == 3 and not STAGE_NAME.fullmatch(args[2][0].lower()):
        message = f"invalid stage name {args[2][0]!r}: use a letter, then letters, digits, '-', '_', '.'"
        raise dockerfile_error(path, instruction.line, message)
    return flags, args


def _mount_from(spec: str, offset: int) -> Word | None:
    """The ``from=`` value of a bind or cache ``--mount`` spec, with its offset."""
    if len(spec) >= 2 and spec[0] == spec[-1] and spec[0] in "\"'":
        spec, offset = spec[1:-1], offset + 1
    kind, source = "bind", None
    for field in _MOUNT_FIELD.finditer(spec):
        key, _, value = field[0].partition("=")
        if key.lower() == "type":
            kind = value
        elif key.lower() == "from":
            source = (value, offset + field.start() + len(key) + 1)
    return source if kind in ("bind", "cache") else None


def copy_sources(instruction: Instruction) -> list[Word]:
    """The raw ``--from`` value of a COPY / ADD, or the mount ``from=`` values of a RUN."""
    flags, _ = _split_flags(split_words(instruction))
    if instruction.keyword == "run":
        mounts = (_mount_from(spec, offset) for spec, offset in flags.get("mount", []))
        return [mount for mount in mounts if mount is not None]
    return flags.get("from", [])[-1:] if instruction.keyword in ("copy", "add") else []


def open_end(lines: list[str], instructions: list[Instruction], escape: str, path: str) -> int | None:
    """The row whose escape character continues the last instruction into the end of the file, if any.

    Docker ends that instruction there, and so does removing the escape character, unless what is
    left of the line ends in the escape character again: that is an error (no line can say it).
    """
    if not instructions:
        return None
    row = instructions[-1].pieces[-1][1]  # the instruction's last line that is not blank or a comment
    body = lines[row].rstrip("\r").rstrip(" \t")
    # Only blank and comment lines follow a continuation that reaches the end (not heredoc bodies).
    if not continues_line(body, escape) or not all(is_blank_or_comment(line) for line in lines[row + 1 :]):
        return None
    if continues_line(body[:-1].rstrip(" \t"), escape):
        message = (
            f"a line continuation at the end of the file, after another {escape!r}: the instruction cannot be "
            f"ended before the LABEL the orchestrator appends without changing it; remove the last {escape!r}"
        )
        raise dockerfile_error(path, row + 1, message)
    return row
