"""Static analysis of a Dockerfile: its stages, the images it builds on, and rebinding.

The orchestrator infers a target's dependencies from its Dockerfile: every ``FROM``, ``COPY --from``
(or ``ADD --from``) and ``RUN --mount=...,from=`` that names an image rather than a build stage, in
the stages the built stage needs. :func:`rebind` then writes the copy of the Dockerfile that is sent
to the daemon, with some of those references replaced by exact images; every line stays in place.

The text is read the way BuildKit's frontend reads it (moby/buildkit ``frontend/dockerfile``):
parser directives (``# escape=``, ``# syntax=``) only at the very top; comment and blank lines
dropped, also inside a continued instruction; a line ending in an escaped escape character not
continued; an instruction continued into the end of the file ended there; words split with the
file's escape character; heredoc bodies skipped; ``$VAR`` / ``${VAR:-x}``
substitution in ``FROM`` with the global ARGs (declared before the first FROM) and the predefined
platform ARGs.

Deliberate simplifications:

- ``platform`` fills the TARGET* *and* BUILD* platform ARGs (one engine builds one platform); with
  ``platform=None`` they are unset, and a ``--platform=`` that substitutes to nothing reads as None.
- ``COPY --from`` and ``--mount=...,from=`` values are substituted with the stage's ARGs over the
  global ARGs (best effort: BuildKit itself refuses variables in ``--from``); ENV is ignored.
- ``${VAR#pat}``, ``${VAR%pat}`` and ``${VAR/a/b}`` are refused with an error; ONBUILD triggers are
  not followed; a ``--mount`` field may not contain a quoted comma.
- A ``--from`` naming the current or a later stage is an error only in a stage the target needs
  (as in BuildKit, which fails on it when it builds that stage).
- :func:`rebind` addresses a reference by its line: a RUN line mounting two *different* images is
  refused (the same raw value twice is replaced twice).
- :func:`stage_configs` reads LABEL and USER words as written: quotes and escapes removed, no
  variable substituted (a value holding ``$`` is reported as such, see :class:`StageConfig`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import DockerfileError, Location, did_you_mean

if TYPE_CHECKING:
    from orchestrator.core.model import ImageTarget

__all__ = ["DockerfileInfo", "ImageRef", "Stage", "StageConfig", "analyze", "rebind", "stage_configs"]
__all__ += ["decode", "read", "with_label_instruction"]

_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]+)")
_HEREDOC_QUOTING = re.compile(r"""["'\\]""")
_HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_VAR_NAME = re.compile(r"[0-9]+|[@*#?$!-]|[^\W\d]\w*")
_VAR_REF = re.compile(r"\$\{?([^\W\d]\w*)")
_PLAIN = re.compile(r"""[^$'"\\`]*""")
_LITERAL_REF = re.compile(r"""[^\s$'"\\`,]+""")
_MOUNT_FIELD = re.compile(r"[^,]+")
_SCRATCH = "scratch"

_Word = tuple[str, int]  # a word and its offset in the instruction's text


def _word_pattern(escape: str) -> re.Pattern[str]:
    """A shell-like word: quoted parts and escaped characters do not split it (BuildKit's parseWords)."""
    e = re.escape(escape)
    return re.compile(rf"""(?:[^\s"'{e}]+|{e}.|{e}$|"(?:[^"{e}]|{e}.)*(?:"|$)|'[^']*(?:'|$))+""")


_WORDS = {escape: _word_pattern(escape) for escape in ("\\", "`")}  # by escape character


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRef:
    """An external image that a needed stage uses."""

    reference: str  # after ARG substitution, exactly as written (no normalisation)
    kind: str  # "from" | "copy-from" | "mount-from"
    line: int  # 1-based line of the instruction's first line
    stage: int  # index of the stage the instruction is in
    platform: str | None  # substituted --platform of that FROM (kind "from" only)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """One ``FROM`` and the instructions after it."""

    index: int
    name: str | None  # the AS alias, lower-cased
    base: str  # substituted FROM argument: "scratch", an earlier stage's name, or an image
    base_stage: int | None  # index of the stage it builds on, if FROM names an earlier stage
    platform: str | None
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerfileInfo:
    """What the orchestrator needs to know about one Dockerfile built for one target stage."""

    stages: tuple[Stage, ...]
    target_stage: int
    needed_stages: tuple[int, ...]  # sorted; the target and every stage it needs, transitively
    image_refs: tuple[ImageRef, ...]  # external images of the needed stages, in file order
    args: tuple[str, ...]  # global ARGs (declared before the first FROM)

    def stage_chain(self) -> tuple[int, ...]:
        """The built stage chain: the target stage, the stage it is FROM, and so on back to an image."""
        chain = [self.target_stage]
        while (base := self.stages[chain[-1]].base_stage) is not None:
            chain.append(base)
        return tuple(chain)


@dataclass(frozen=True, slots=True, kw_only=True)
class StageConfig:
    """What one stage's own LABEL and USER instructions set (not what it inherits from its base).

    Words are read as written: quotes and escapes removed, no ARG or ENV substituted. So a label
    value holding ``$`` is None (it cannot be known here), and a USER holding ``$`` is kept raw.
    """

    index: int  # the stage's index, as in DockerfileInfo.stages
    labels: tuple[tuple[str, str | None], ...]  # (key, value) in file order; a later key wins
    user: str | None  # the last USER's first word; None without a USER or when it cannot be read
    user_line: int | None  # 1-based line of the last USER; None when the stage has none


@dataclass(frozen=True, slots=True)
class _Instruction:
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


def _error(path: str, line: int | None, message: str) -> DockerfileError:
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


def _split_lines(text: str) -> list[str]:
    # Split on "\n" only, as Go's line scanner does; a trailing "\r" is ignored where it matters.
    return text.removeprefix("\ufeff").split("\n")


def _escape_token(lines: list[str], path: str) -> str:
    """The escape character set by the parser directives at the top (default backslash)."""
    escape, seen = "\\", set()
    for row, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if match is None or match[1].lower() not in _DIRECTIVES:
            break
        name = match[1].lower()
        if name in seen:
            raise _error(path, row + 1, f"only one {name} parser directive can be used")
        if name == "escape" and match[2] not in ("\\", "`"):
            raise _error(path, row + 1, f"invalid escape directive {match[2]!r}: must be \\ or `")
        seen.add(name)
        escape = match[2] if name == "escape" else escape
    return escape


def _instructions(lines: list[str], escape: str, path: str) -> list[_Instruction]:
    result: list[_Instruction] = []
    row = 0
    while row < len(lines):
        instruction, row = _read_instruction(lines, row, escape)
        if instruction is not None:
            result.append(instruction)
            if instruction.keyword in _HEREDOC_KEYWORDS and "<<" in instruction.text:
                row = _skip_heredocs(instruction, lines, row, path)
    return result


def _continues(line: str, escape: str) -> bool:
    r"""Whether ``line`` (trailing blanks stripped) goes on on the next line, as BuildKit reads it.

    It ends in the escape character, unless that is escaped itself: ``RUN echo a\\`` ends there
    (``parser.go``: ``([^\\])\\[ \t]*$|^\\[ \t]*$``; Docker 20.10's classic builder agrees).
    """
    return line.endswith(escape) and not line[:-1].endswith(escape)


def _is_blank_or_comment(line: str) -> bool:
    stripped = line.lstrip()
    return not stripped or stripped[0] == "#"


def _read_instruction(lines: list[str], row: int, escape: str) -> tuple[_Instruction | None, int]:
    """The instruction starting at ``lines[row]`` (None for a blank or comment line), and the next row."""
    first = lines[row].rstrip("\r")
    if _is_blank_or_comment(first):
        return None, row + 1
    body = first.lstrip()
    start, column, offset = row, len(first) - len(body), 0
    parts: list[str] = []
    pieces: list[tuple[int, int, int]] = []
    while True:
        stripped = body.rstrip(" \t")
        continued = _continues(stripped, escape)
        piece = stripped[:-1] if continued else body
        pieces.append((offset, row, column))
        parts.append(piece)
        offset += len(piece)
        row += 1
        # Comment and blank lines inside a continuation are dropped and do not end it.
        while continued and row < len(lines) and _is_blank_or_comment(lines[row]):
            row += 1
        if not continued or row >= len(lines):
            break
        body, column = lines[row].rstrip("\r"), 0
    text = "".join(parts)
    keyword = _WORDS[escape].search(text)
    if keyword is None:
        return None, row
    instruction = _Instruction(keyword[0].lower(), text, start + 1, tuple(pieces), escape)
    return instruction, row


def _skip_heredocs(instruction: _Instruction, lines: list[str], row: int, path: str) -> int:
    """Skip the bodies of the instruction's heredocs (``<<EOF``, ``<<-"EOF"``, ...), one after another."""
    for word, _ in _words(instruction):
        match = _HEREDOC.fullmatch(word)
        if match is None or not (name := _HEREDOC_QUOTING.sub("", match[3])):
            continue
        while True:
            if row >= len(lines):
                raise _error(path, instruction.line, f"unterminated heredoc <<{name}: no line {name!r} ends it")
            body = lines[row].rstrip("\r")
            row += 1
            if (body.lstrip("\t") if match[2] else body) == name:  # <<- strips leading tabs
                break
    return row


def _words(instruction: _Instruction) -> list[_Word]:
    """The words after the instruction keyword, each with its offset in the instruction's text."""
    return [(match[0], match.start()) for match in _WORDS[instruction.escape].finditer(instruction.text)][1:]


def _split_flags(words: list[_Word]) -> tuple[dict[str, list[_Word]], list[_Word]]:
    """Leading ``--name=value`` flags (value and its offset, by name) and the remaining words."""
    flags: dict[str, list[_Word]] = {}
    for k, (word, offset) in enumerate(words):
        if not word.startswith("--") or word == "--":
            return flags, words[k + (word == "--") :]
        name, _, value = word[2:].partition("=")
        flags.setdefault(name, []).append((value, offset + 3 + len(name)))
    return flags, []


def _from_parts(instruction: _Instruction, path: str) -> tuple[dict[str, list[_Word]], list[_Word]]:
    """The flags and the ``<image> [AS <name>]`` words of a FROM, checked."""
    flags, args = _split_flags(_words(instruction))
    if not args:
        raise _error(path, instruction.line, "FROM without an image: FROM [--platform=<p>] <image> [AS <name>]")
    if len(args) not in (1, 3) or (len(args) == 3 and args[1][0].lower() != "as"):
        words = " ".join(word for word, _ in args)
        raise _error(path, instruction.line, f"FROM {words!r}: expected <image> [AS <name>]")
    if len(args) == 3 and not _STAGE_NAME.fullmatch(args[2][0].lower()):
        message = f"invalid stage name {args[2][0]!r}: use a letter, then letters, digits, '-', '_', '.'"
        raise _error(path, instruction.line, message)
    return flags, args


def _mount_from(spec: str, offset: int) -> _Word | None:
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


def _sources(instruction: _Instruction) -> list[_Word]:
    """The raw ``--from`` value of a COPY / ADD, or the mount ``from=`` values of a RUN."""
    flags, _ = _split_flags(_words(instruction))
    if instruction.keyword == "run":
        mounts = (_mount_from(spec, offset) for spec, offset in flags.get("mount", []))
        return [mount for mount in mounts if mount is not None]
    return flags.get("from", [])[-1:] if instruction.keyword in ("copy", "add") else []


# --- ARG substitution -----------------------------------------------------------------------------


class _Lexer:
    """Shell-style word processing as BuildKit does it: quotes, escapes, ``$VAR``, ``${VAR...}``."""

    __slots__ = ("escape", "pos", "scope", "word")

    def __init__(self, word: str, scope: Mapping[str, str], escape: str) -> None:
        self.word, self.scope, self.escape, self.pos = word, scope, escape, 0

    def expand(self) -> str:
        return self.word if _PLAIN.fullmatch(self.word) else self._until("")

    def _until(self, stop: str) -> str:
        out: list[str] = []
        word = self.word
        while self.pos < len(word):
            char = word[self.pos]
            self.pos += 1
            if char == stop:
                return "".join(out)
            if char == "'":
                end = word.find("'", self.pos)
                if end < 0:
                    raise ValueError("unterminated single quote")
                out.append(word[self.pos : end])
                self.pos = end + 1
            elif char == '"':
                out.append(self._double_quoted())
            elif char == self.escape:  # the next character is literal
                out.append(word[self.pos : self.pos + 1])
                self.pos += 1
            else:
                out.append(self._dollar() if char == "$" else char)
        if stop:
            raise ValueError(f"missing {stop!r}")
        return "".join(out)

    def _double_quoted(self) -> str:
        out: list[str] = []
        word = self.word
        while self.pos < len(word):
            char = word[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "$":
                out.append(self._dollar())
                continue
            # Inside double quotes the escape character only escapes '"', '$' and itself.
            if char == self.escape and word[self.pos : self.pos + 1] in ('"', "$", self.escape):
                char = word[self.pos]
                self.pos += 1
            out.append(char)
        raise ValueError("unterminated double quote")

    def _dollar(self) -> str:
        """After a ``$``: ``$NAME``, ``${NAME}``, or ``${NAME[:]-word}`` / ``+word`` / ``?message``."""
        word = self.word
        braced = word.startswith("{", self.pos)
        match = _VAR_NAME.match(word, self.pos + braced)  # the name starts after a "{"
        if not braced:
            if match is None:
                return "$"
            self.pos = match.end()
            return self.scope.get(match[0], "")
        if match is None:
            raise ValueError("bad substitution")
        name, self.pos = match[0], match.end() + 1
        op = word[self.pos - 1 : self.pos]
        if op == "}":
            return self.scope.get(name, "")
        colon = op == ":"
        if colon:
            op = word[self.pos : self.pos + 1]
            self.pos += 1
        if op not in ("-", "+", "?"):
            raise ValueError(f"unsupported modifier ({':' * colon}{op}) in substitution" if op else "missing '}'")
        alternative = self._until("}")
        value = self.scope.get(name)
        if value is None or (colon and not value):  # with ":" an empty value counts as unset
            if op == "?":
                raise ValueError(f"{name}: {alternative or 'is not allowed to be unset or empty'}")
            return alternative if op == "-" else ""
        return alternative if op == "+" else value


def _platform_args(platform: str | None) -> dict[str, str]:
    """The predefined TARGET* / BUILD* ARGs for ``platform`` (both from the same platform)."""
    if platform is None:
        return {}
    os_name, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    values = {"PLATFORM": platform, "OS": os_name, "ARCH": arch, "VARIANT": variant}
    return {prefix + key: value for prefix in ("TARGET", "BUILD") for key, value in values.items()}


# --- Analysis -------------------------------------------------------------------------------------


class _Analyzer:
    """Walks the instructions once, collecting stages, stage dependencies and image references."""

    def __init__(self, *, path: str, escape: str, build_args: Mapping[str, str], platform: str | None) -> None:
        self.path, self.escape, self.build_args = path, escape, build_args
        self.global_scope = _platform_args(platform)
        self.global_args: list[str] = []
        self.scope: dict[str, str] = {}  # the current stage's ARGs over the global ones
        self.scopes: list[dict[str, str]] = []  # each stage's scope, for the stages built on it
        self.stages: list[Stage] = []
        self.names: dict[str, int] = {}  # stage name -> index (the last stage of that name)
        self.deps: list[set[int]] = []  # stage index -> the stages it uses
        self.refs: list[ImageRef] = []
        self.forward: list[tuple[str, int, int, int]] = []  # (value, stage, user stage, line)

    def feed(self, instruction: _Instruction) -> None:
        keyword = instruction.keyword
        if keyword == "from":
            self._from(instruction)
        elif not self.stages:
            if keyword != "arg":
                message = f"{keyword.upper()} before the first FROM: only ARG may come before FROM"
                raise _error(self.path, instruction.line, message)
            self._arg(instruction, self.global_scope, is_global=True)
        elif keyword == "arg":
            self._arg(instruction, self.scope, is_global=False)
        else:
            for raw, _ in _sources(instruction):
                self._source(raw, "mount-from" if keyword == "run" else "copy-from", instruction.line)

    def _expand(self, word: str, scope: Mapping[str, str], line: int) -> str:
        try:
            return _Lexer(word, scope, self.escape).expand()
        except ValueError as exc:
            raise _error(self.path, line, f"cannot substitute {word!r}: {exc}") from None

    def _empty(self, what: str, raw: str, declared: Collection[str], line: int) -> DockerfileError:
        hints = "".join(
            f"; ARG {name} is {'empty' if name in declared else 'not declared'}" for name in _VAR_REF.findall(raw)
        )
        return _error(self.path, line, f"{what} {raw!r} is empty after ARG substitution{hints}")

    def _arg(self, instruction: _Instruction, scope: dict[str, str], *, is_global: bool) -> None:
        words = _words(instruction)
        if not words:
            raise _error(self.path, instruction.line, "ARG without a name")
        for word, _ in words:
            name, has_default, default = word.partition("=")
            if is_global:
                self.global_args.append(name)
            # A build arg wins over the default; with neither, an inherited value stays.
            if name in self.build_args:
                scope[name] = self.build_args[name]
            elif has_default:
                scope[name] = self._expand(default, scope, instruction.line)

    def _from(self, instruction: _Instruction) -> None:
        flags, args = _from_parts(instruction, self.path)
        line, raw = instruction.line, args[0][0]
        base = self._expand(raw, self.global_scope, line)
        if not base:
            raise self._empty("FROM image", raw, self.global_args, line)
        platform = None
        if "platform" in flags:
            platform = self._expand(flags["platform"][-1][0], self.global_scope, line) or None
        index, base_stage = len(self.stages), self.names.get(base.lower())
        name = args[2][0].lower() if len(args) == 3 else None
        self.stages.append(
            Stage(index=index, name=name, base=base, base_stage=base_stage, platform=platform, line=line)
        )
        self.deps.append(set() if base_stage is None else {base_stage})
        # A stage built on an earlier stage inherits its ARGs, as in BuildKit.
        self.scope = dict(self.global_scope if base_stage is None else self.scopes[base_stage])
        self.scopes.append(self.scope)
        if name is not None:
            self.names[name] = index  # after the lookup: `FROM nginx AS nginx` is an image
        if base_stage is None and base != _SCRATCH:
            self.refs.append(ImageRef(reference=base, kind="from", line=line, stage=index, platform=platform))

    def _source(self, raw: str, kind: str, line: int) -> None:
        """A ``--from`` / mount ``from=`` value: an earlier stage (by name or index) or an image."""
        current = len(self.stages) - 1
        value = self._expand(raw, self.scope, line)
        if not value:
            raise self._empty("--from", raw, self.scope.keys() | set(self.global_args), line)
        stage = int(value) if value.isascii() and value.isdigit() else self.names.get(value.lower())
        if stage is not None and stage >= current:
            self.forward.append((value, stage, current, line))
        elif stage is not None:
            self.deps[current].add(stage)
        elif value != _SCRATCH:
            self.refs.append(ImageRef(reference=value, kind=kind, line=line, stage=current, platform=None))

    def result(self, target: str | None) -> DockerfileInfo:
        if not self.stages:
            raise _error(self.path, None, "no FROM instruction")
        # Earlier stages were resolved during the walk; a name still matching is a later stage.
        for ref in self.refs:
            if ref.kind != "from" and (stage := self.names.get(ref.reference.lower())) is not None:
                self.forward.append((ref.reference, stage, ref.stage, ref.line))
        target_stage = self._target(target)
        needed, todo = {target_stage}, [target_stage]
        while todo:
            for dep in self.deps[todo.pop()] - needed:
                needed.add(dep)
                todo.append(dep)
        # Like BuildKit, fail on a stage used before it is defined only in a stage that is built.
        for value, stage, current, line in sorted(self.forward, key=lambda forward: forward[3]):
            if current in needed:
                message = f"--from={value} names stage {stage}, which is not before the current stage {current}"
                raise _error(self.path, line, message + ": a stage can only use earlier stages")
        return DockerfileInfo(
            stages=tuple(self.stages),
            target_stage=target_stage,
            needed_stages=tuple(sorted(needed)),
            image_refs=tuple(ref for ref in self.refs if ref.stage in needed),
            args=tuple(dict.fromkeys(self.global_args)),
        )

    def _target(self, target: str | None) -> int:
        if not target:  # None (or "", as BuildKit reads it): the last stage
            return len(self.stages) - 1
        stage = self.names.get(target.lower())
        if stage is None:
            names = [s.name for s in self.stages if s.name is not None]
            listing = ", ".join(names) if names else "none (no FROM ... AS <name>)"
            hint = did_you_mean(target.lower(), names)
            raise _error(self.path, None, f"target stage {target!r} not found; stages: {listing}{hint}")
        return stage


def analyze(
    text: str,
    *,
    path: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platform: str | None = None,
) -> DockerfileInfo:
    """Analyse a Dockerfile's text for building ``target`` (default: the last stage) on ``platform``.

    ``path`` only names the file in errors. Raises :class:`DockerfileError` for the problems that
    Docker would reject and that this analysis can see, and for an end that
    :func:`with_label_instruction` cannot append to.
    """
    lines = _split_lines(text)
    escape = _escape_token(lines, path)
    analyzer = _Analyzer(path=path, escape=escape, build_args=build_args or {}, platform=platform)
    instructions = _instructions(lines, escape, path)
    _open_end(lines, instructions, escape, path)  # an end the build cannot append to fails now
    for instruction in instructions:
        analyzer.feed(instruction)
    return analyzer.result(target)


# --- LABEL and USER -------------------------------------------------------------------------------


def stage_configs(text: str, *, path: str = "Dockerfile") -> tuple[StageConfig, ...]:
    """The LABEL pairs and the USER of each stage, one :class:`StageConfig` per FROM in file order.

    The i-th entry belongs to :attr:`DockerfileInfo.stages` ``[i]``; it does not depend on build
    args, target or platform. ``path`` only names the file in errors (a bad escape directive, an
    unterminated heredoc); other problems are left to :func:`analyze`.
    """
    lines = _split_lines(text)
    escape = _escape_token(lines, path)
    stages: list[list[_Instruction]] = []
    for instruction in _instructions(lines, escape, path):
        if instruction.keyword == "from":
            stages.append([])
        elif stages:  # only ARG may come before the first FROM
            stages[-1].append(instruction)
    return tuple(_stage_config(index, instructions, escape) for index, instructions in enumerate(stages))


def _stage_config(index: int, instructions: list[_Instruction], escape: str) -> StageConfig:
    labels = [pair for i in instructions if i.keyword == "label" for pair in _label_pairs(i, escape)]
    users = [i for i in instructions if i.keyword == "user"]
    if not users:
        return StageConfig(index=index, labels=tuple(labels), user=None, user_line=None)
    words = _words(users[-1])
    raw = words[0][0] if words else None
    # "$" stays so that a user set from an ARG can be told apart from a literal one.
    user = raw if raw is None or "$" in raw else _unquote(raw, escape)
    return StageConfig(index=index, labels=tuple(labels), user=user, user_line=users[-1].line)


def _label_pairs(instruction: _Instruction, escape: str) -> list[tuple[str, str | None]]:
    """The (key, value) pairs of ``LABEL k=v k2="v 2"``, or of the legacy ``LABEL key the value``."""
    words = [word for word, _ in _words(instruction)]
    if words and "=" not in words[0]:
        raw_pairs = [(words[0], " ".join(words[1:]))]
    else:
        raw_pairs = [(key, value) for key, _, value in (word.partition("=") for word in words)]
    pairs: list[tuple[str, str | None]] = []
    for raw_key, raw_value in raw_pairs:
        key = _unquote(raw_key, escape)
        if key:
            pairs.append((key, None if "$" in raw_value else _unquote(raw_value, escape)))
    return pairs


def _unquote(word: str, escape: str) -> str | None:
    """``word`` without its quotes and escapes (variables are not substituted); None if unreadable."""
    try:
        return _Lexer(word, {}, escape).expand()
    except ValueError:
        return None


def analyze_image(target: ImageTarget, text: str, platform: str) -> DockerfileInfo:
    """:func:`analyze` of an ``image()`` target's Dockerfile ``text`` as that target builds it."""
    return analyze(
        text, path=target.dockerfile, build_args=dict(target.build_args), target=target.target, platform=platform
    )


# --- Rebinding ------------------------------------------------------------------------------------


def rebind(text: str, replacements: Mapping[int, str], *, path: str = "Dockerfile") -> str:
    """``text`` with the image reference of the instruction starting at each given line replaced.

    ``replacements`` maps an :attr:`ImageRef.line` to a literal reference. Only the reference's
    characters change: flags, ``AS`` names, comments and all line numbers stay as they were.
    """
    for new in replacements.values():
        if not _LITERAL_REF.fullmatch(new):
            raise ValueError(f"replacement {new!r} is not a literal image reference")
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    lines = _split_lines(text)
    edits: list[tuple[int, int, int, str]] = []  # (row, column, old length, new)
    stage_names: set[str] = set()  # the stages defined so far
    rebound: set[int] = set()
    for instruction in _instructions(lines, _escape_token(lines, path), path):
        if instruction.line in replacements:
            for raw, offset in _sites(instruction, stage_names, path):
                position = instruction.position(offset, offset + len(raw))
                if position is None:
                    raise _error(path, instruction.line, f"cannot rebind {raw!r}: a line continuation splits it")
                edits.append((*position, len(raw), replacements[instruction.line]))
            rebound.add(instruction.line)
        if instruction.keyword == "from":
            stage_names.update(word.lower() for word, _ in _from_parts(instruction, path)[1][2:])
    if missing := sorted(set(replacements) - rebound):
        raise _error(path, missing[0], f"no instruction starts at line {missing[0]}")
    for row, column, length, new in sorted(edits, reverse=True):
        lines[row] = lines[row][:column] + new + lines[row][column + length :]
    return bom + "\n".join(lines)


def _sites(instruction: _Instruction, stage_names: Collection[str], path: str) -> list[_Word]:
    """The raw image words (and offsets) that rebinding replaces in ``instruction``: one distinct value."""
    sites = _from_parts(instruction, path)[1][:1] if instruction.keyword == "from" else _sources(instruction)
    # Literal stage names and indices are not images (an ARG-templated one cannot be told apart).
    images = [(raw, offset) for raw, offset in sites if not (raw.isdigit() or raw.lower() in stage_names)]
    if not images:
        message = f"no image reference to rebind in this {instruction.keyword.upper()}"
        raise _error(path, instruction.line, message)
    if len(distinct := dict.fromkeys(raw for raw, _ in images)) > 1:
        message = f"cannot rebind: the line has several image references ({', '.join(distinct)})"
        raise _error(path, instruction.line, message)
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
    lines = text.split("\n")  # as _split_lines numbers them (a BOM stays on the first line)
    escape = _escape_token(_split_lines(text), path)
    words = (f"{_label_word(key, escape)}={_label_word(value, escape)}" for key, value in sorted(labels.items()))
    label = "LABEL " + " ".join(words)
    following = [s.line for s in info.stages if s.index == info.target_stage + 1]
    if following:
        at = following[0] - 1
        return "\n".join([*lines[:at], label, *lines[at:]])
    source = _split_lines(text)
    row = _open_end(source, _instructions(source, escape, path), escape, path)
    if row is not None:
        body = lines[row].rstrip("\r").rstrip(" \t")
        lines[row] = body[:-1] + lines[row][len(body) :]  # what followed the escape character stays
    body = "\n".join(lines)
    return body + ("" if body.endswith("\n") or not body else "\n") + label + "\n"


def _open_end(lines: list[str], instructions: list[_Instruction], escape: str, path: str) -> int | None:
    """The row whose escape character continues the last instruction into the end of the file, if any.

    Docker ends that instruction there, and so does removing the escape character, unless what is
    left of the line ends in the escape character again: that is an error (no line can say it).
    """
    if not instructions:
        return None
    row = instructions[-1].pieces[-1][1]  # the instruction's last line that is not blank or a comment
    body = lines[row].rstrip("\r").rstrip(" \t")
    # Only blank and comment lines follow a continuation that reaches the end (not heredoc bodies).
    if not _continues(body, escape) or not all(_is_blank_or_comment(line) for line in lines[row + 1 :]):
        return None
    if _continues(body[:-1].rstrip(" \t"), escape):
        message = (
            f"a line continuation at the end of the file, after another {escape!r}: the instruction cannot be "
            f"ended before the LABEL the orchestrator appends without changing it; remove the last {escape!r}"
        )
        raise _error(path, row + 1, message)
    return row
