"""Static analysis of a Dockerfile: its stages, the images it builds on, its LABELs and USERs.

The orchestrator infers a target's dependencies from its Dockerfile: every ``FROM``, ``COPY --from``
(or ``ADD --from``) and ``RUN --mount=...,from=`` that names an image rather than a build stage, in
the stages the built stage needs (``rewrite.rebind`` then names exact images in their place).

The text is read by ``lexer.py``; here ``$VAR`` / ``${VAR:-x}`` are substituted in ``FROM`` with the
global ARGs (declared before the first FROM) and the predefined platform ARGs.

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
from typing import TYPE_CHECKING

from orchestrator.dockerfile.lexer import (
    PLAIN,
    Instruction,
    copy_sources,
    dockerfile_error,
    escape_token,
    from_parts,
    open_end,
    read_instructions,
    split_lines,
    split_words,
)
from orchestrator.errors import DockerfileError, did_you_mean

if TYPE_CHECKING:
    from orchestrator.core.model import ImageTarget

_VAR_NAME = re.compile(r"[0-9]+|[@*#?$!-]|[^\W\d]\w*")
_VAR_REF = re.compile(r"\$\{?([^\W\d]\w*)")
_SCRATCH = "scratch"


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


# --- ARG substitution -----------------------------------------------------------------------------


class _Lexer:
    """Shell-style word processing as BuildKit does it: quotes, escapes, ``$VAR``, ``${VAR...}``."""

    __slots__ = ("escape", "pos", "scope", "word")

    def __init__(self, word: str, scope: Mapping[str, str], escape: str) -> None:
        self.word, self.scope, self.escape, self.pos = word, scope, escape, 0

    def expand(self) -> str:
        return self.word if PLAIN.fullmatch(self.word) else self._until("")

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

    def feed(self, instruction: Instruction) -> None:
        keyword = instruction.keyword
        if keyword == "from":
            self._from(instruction)
        elif not self.stages:
            if keyword != "arg":
                message = f"{keyword.upper()} before the first FROM: only ARG may come before FROM"
                raise dockerfile_error(self.path, instruction.line, message)
            self._arg(instruction, self.global_scope, is_global=True)
        elif keyword == "arg":
            self._arg(instruction, self.scope, is_global=False)
        else:
            for raw, _ in copy_sources(instruction):
                self._source(raw, "mount-from" if keyword == "run" else "copy-from", instruction.line)

    def _expand(self, word: str, scope: Mapping[str, str], line: int) -> str:
        try:
            return _Lexer(word, scope, self.escape).expand()
        except ValueError as exc:
            raise dockerfile_error(self.path, line, f"cannot substitute {word!r}: {exc}") from None

    def _empty(self, what: str, raw: str, declared: Collection[str], line: int) -> DockerfileError:
        hints = "".join(
            f"; ARG {name} is {'empty' if name in declared else 'not declared'}" for name in _VAR_REF.findall(raw)
        )
        return dockerfile_error(self.path, line, f"{what} {raw!r} is empty after ARG substitution{hints}")

    def _arg(self, instruction: Instruction, scope: dict[str, str], *, is_global: bool) -> None:
        words = split_words(instruction)
        if not words:
            raise dockerfile_error(self.path, instruction.line, "ARG without a name")
        for word, _ in words:
            name, has_default, default = word.partition("=")
            if is_global:
                self.global_args.append(name)
            # A build arg wins over the default; with neither, an inherited value stays.
            if name in self.build_args:
                scope[name] = self.build_args[name]
            elif has_default:
                scope[name] = self._expand(default, scope, instruction.line)

    def _from(self, instruction: Instruction) -> None:
        flags, args = from_parts(instruction, self.path)
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
            raise dockerfile_error(self.path, None, "no FROM instruction")
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
                raise dockerfile_error(self.path, line, message + ": a stage can only use earlier stages")
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
            raise dockerfile_error(self.path, None, f"target stage {target!r} not found; stages: {listing}{hint}")
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
    lines = split_lines(text)
    escape = escape_token(lines, path)
    analyzer = _Analyzer(path=path, escape=escape, build_args=build_args or {}, platform=platform)
    instructions = read_instructions(lines, escape, path)
    open_end(lines, instructions, escape, path)  # an end the build cannot append to fails now
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
    lines = split_lines(text)
    escape = escape_token(lines, path)
    stages: list[list[Instruction]] = []
    for instruction in read_instructions(lines, escape, path):
        if instruction.keyword == "from":
            stages.append([])
        elif stages:  # only ARG may come before the first FROM
            stages[-1].append(instruction)
    return tuple(_stage_config(index, instructions, escape) for index, instructions in enumerate(stages))


def _stage_config(index: int, instructions: list[Instruction], escape: str) -> StageConfig:
    labels = [pair for i in instructions if i.keyword == "label" for pair in _label_pairs(i, escape)]
    users = [i for i in instructions if i.keyword == "user"]
    if not users:
        return StageConfig(index=index, labels=tuple(labels), user=None, user_line=None)
    words = split_words(users[-1])
    raw = words[0][0] if words else None
    # "$" stays so that a user set from an ARG can be told apart from a literal one.
    user = raw if raw is None or "$" in raw else unquote(raw, escape)
    return StageConfig(index=index, labels=tuple(labels), user=user, user_line=users[-1].line)


def _label_pairs(instruction: Instruction, escape: str) -> list[tuple[str, str | None]]:
    """The (key, value) pairs of ``LABEL k=v k2="v 2"``, or of the legacy ``LABEL key the value``."""
    words = [word for word, _ in split_words(instruction)]
    if words and "=" not in words[0]:
        raw_pairs = [(words[0], " ".join(words[1:]))]
    else:
        raw_pairs = [(key, value) for key, _, value in (word.partition("=") for word in words)]
    pairs: list[tuple[str, str | None]] = []
    for raw_key, raw_value in raw_pairs:
        key = unquote(raw_key, escape)
        if key:
            pairs.append((key, None if "$" in raw_value else unquote(raw_value, escape)))
    return pairs


def analyze_image(target: ImageTarget, text: str, platform: str) -> DockerfileInfo:
    """:func:`analyze` of an ``image()`` target's Dockerfile ``text`` as that target builds it."""
    return analyze(
        text, path=target.dockerfile, build_args=dict(target.build_args), target=target.target, platform=platform
    )


def unquote(word: str, escape: str) -> str | None:
    """``word`` without its quotes and escapes (variables are not substituted); None if unreadable."""
    try:
        return _Lexer(word, {}, escape).expand()
    except ValueError:
        return None
