"""What a Dockerfile reads from its build context, found statically.

Building a stage reads the context through ``COPY`` / ``ADD`` without ``--from`` and through
``RUN --mount`` binds without ``from=`` in the stages the target needs, and through the ONBUILD
triggers of the images (and of the earlier stages) those stages are built on. The instructions come
from BuildKit's own parser (the ``dockerfile`` package); stages, the stages a target needs and the
global ARGs come from :func:`~orchestrator.dockerfile.analysis.analyze`.

Sources are substituted as BuildKit does it: a stage sees a global or platform ARG only after its own
``ARG NAME``; a build arg wins over a default; a stage built on an earlier stage inherits its ARGs; an
ARG declared with no value substitutes to "". A source that uses anything else (an ENV, maybe one of
the base image) cannot be known here: the whole context is then an input (:attr:`ContextReads.whole`).

Deliberate simplifications:

- A name set by an ENV in any needed stage is not followed, even where an ARG of that name is in
  scope; an ARG whose default uses such a name is not followed either.
- An ``ARG NAME`` with no value is "" even if the base image has an ENV of that name.
- With ``platform=None`` the TARGET* / BUILD* ARGs are unknown: a source using them is not followed.
- ONBUILD trigger sources are not substituted (they are, in the child's build): one holding ``$`` is
  not followed.
- ``COPY --exclude`` and ``--parents`` are ignored: a read may name more than is copied.
"""

from __future__ import annotations

import csv
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dockerfile as buildkit  # BuildKit's parser; it ships no type hints: only _parse touches it

from orchestrator.dockerfile.analysis import _Lexer, _platform_args, analyze
from orchestrator.dockerfile.lexer import escape_token, split_lines

_WHY_WIDTH = 80
_GLOB = re.compile(r"[*?\[]")
_ONBUILD = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_PLATFORM_ARGS = tuple(_platform_args("o/a/v"))  # the names only
_SCRATCH = "scratch"


@dataclass(frozen=True, slots=True, kw_only=True)
class Read:
    """One source that an instruction reads from the build context."""

    source: str  # posix path relative to the context root, normalised; "." is the whole context
    glob: bool  # the source holds Docker wildcards (*, ? or [)
    line: int  # 1-based line of the instruction, in the Dockerfile that holds it
    why: str  # the instruction as written, one line, at most 80 characters
    origin: str = "Dockerfile"  # the Dockerfile that holds the instruction (its ``path``)

    def explained(self) -> str:
        """Where the read comes from and what it is: ``app/Dockerfile:3 COPY src/ /app/``."""
        return f"{self.origin}:{self.line} {self.why}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextReads:
    """What building a target reads from its context; ``whole`` when that cannot be known statically."""

    reads: tuple[Read, ...]  # in file order, duplicates allowed
    whole: str | None = None  # set: the whole context is an input, and this says why ("file:line: reason")


# --- BuildKit's parser, typed ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Command:
    """One instruction as BuildKit's parser reads it."""

    keyword: str  # upper-case
    trigger: str | None  # ONBUILD's instruction keyword, upper-case
    json: bool
    original: str  # continuation lines joined; heredoc bodies follow on further lines
    line: int
    flags: tuple[str, ...]  # "--name=value" / "--name"
    words: tuple[str, ...]  # raw: split at blanks, quotes and $VARs kept (JSON form: the strings)
    heredocs: bool


class _Unparsable(Exception):
    pass


def _parse(text: str) -> tuple[_Command, ...]:
    """BuildKit's reading of ``text``; raises :class:`_Unparsable` where BuildKit's parser fails."""
    try:
        commands: Any = buildkit.parse_string(text)
    except buildkit.GoParseError as exc:
        raise _Unparsable(str(exc).strip() or type(exc).__name__) from None
    return tuple(
        _Command(
            keyword=str(c.cmd).upper(),
            trigger=str(c.sub_cmd).upper() if c.sub_cmd else None,
            json=bool(c.json),
            original=str(c.original),
            line=int(c.start_line),
            flags=tuple(str(flag) for flag in c.flags),
            words=tuple(str(word) for word in c.value),
            heredocs=bool(c.heredocs),
        )
        for c in commands
    )


# --- ARG scopes -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Scope:
    values: dict[str, str] = field(default_factory=dict)  # ARGs with a value
    declared: set[str] = field(default_factory=set)  # every ARG declared (with a value or not)
    unknown: dict[str, str] = field(default_factory=dict)  # ARG -> why its value cannot be known here

    def copy(self) -> _Scope:
        return _Scope(dict(self.values), set(self.declared), dict(self.unknown))


class _Recording(Mapping[str, str]):
    """A scope that remembers the names looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.inner, self.used = values, list[str]()

    def __getitem__(self, key: str) -> str:
        self.used.append(key)
        return self.inner[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class _Unknown(Exception):
    """A word that cannot be substituted here; the message says why."""


class _Walker:
    def __init__(
        self, *, path: str, escape: str, build_args: Mapping[str, str], platform: str | None, env_names: set[str]
    ) -> None:
        self.path, self.escape, self.build_args, self.env_names = path, escape, build_args, env_names
        self.globals = _Scope(values=_platform_args(platform))
        if platform is None:
            self.globals.unknown = {
                name: "which depends on the platform, and none is given"
                for name in _PLATFORM_ARGS
                if name not in build_args
            }
        self.reads: list[Read] = []
        self.whole: str | None = None

    def problem(self, reason: str) -> None:
        if self.whole is None:
            self.whole = reason

    def expand(self, raw: str, scope: _Scope, *, line: int, what: str) -> str:
        """``raw`` substituted with ``scope``; raises :class:`_Unknown` where that cannot be known here."""
        recording = _Recording(scope.values)
        try:
            value = _Lexer(raw, recording, self.escape).expand()
        except ValueError as exc:
            raise _Unknown(f"{self.path}:{line}: {what} {raw}: cannot substitute it: {exc}") from None
        for name in dict.fromkeys(recording.used):
            if name in self.env_names:
                why = "which an ENV sets (ENV values are not followed)"
            elif name in scope.unknown:
                why = scope.unknown[name]
            elif name not in scope.declared:
                why = "which is not an ARG in scope (ENV values are not followed)"
            else:
                continue
            raise _Unknown(f"{self.path}:{line}: {what} {raw} uses {name}, {why}")
        return value

    def arg(self, command: _Command, scope: _Scope, *, is_global: bool) -> None:
        for word in command.words:
            name, has_default, default = word.partition("=")
            scope.declared.add(name)
            scope.unknown.pop(name, None)
            if name in self.build_args:
                scope.values[name] = self.build_args[name]
            elif has_default:
                try:
                    scope.values[name] = self.expand(default, scope, line=command.line, what=f"ARG {name} default")
                except _Unknown as exc:
                    scope.values.pop(name, None)
                    scope.unknown[name] = f"which cannot be known here ({exc})"
            elif is_global:
                pass  # a global ARG with no value stays unset (a platform ARG keeps its value)
            elif name in self.globals.unknown:
                scope.unknown[name] = self.globals.unknown[name]
            elif name in self.globals.values:
                scope.values[name] = self.globals.values[name]
            # else: an inherited value stays; with none, it substitutes to "".

    def command(self, command: _Command, scope: _Scope) -> None:
        """The reads of one instruction of a needed stage (ONBUILD is not run by this build)."""
        if command.keyword in ("COPY", "ADD"):
            for raw in _copy_sources(command):
                try:
                    value = self.expand(raw, scope, line=command.line, what=f"{command.keyword} source")
                except _Unknown as exc:
                    self.problem(str(exc))
                    continue
                if command.keyword != "ADD" or not _remote(value):
                    self.read(value, command.line, _why(command.original))
        elif command.keyword == "RUN":
            for spec, raw in _mount_sources(command.flags):
                try:
                    value = self.expand(raw, scope, line=command.line, what="RUN --mount source")
                except _Unknown as exc:
                    self.problem(str(exc))
                    continue
                self.read(value, command.line, _why(f"RUN --mount={spec}"))

    def read(self, value: str, line: int, why: str) -> None:
        source = _normalise(value)
        glob = _GLOB.search(source) is not None
        self.reads.append(Read(source=source, glob=glob, line=line, why=why, origin=self.path))


# --- Instructions ---------------------------------------------------------------------------------


def _flag(flags: tuple[str, ...], name: str) -> str | None:
    """The last value of ``--name=value`` (``--name`` alone: "")."""
    value = None
    for flag in flags:
        key, _, rest = flag.removeprefix("--").partition("=")
        if key.lower() == name:
            value = rest
    return value


def _copy_sources(command: _Command) -> list[str]:
    """The raw context sources of a COPY / ADD: not --from, not heredocs, not the destination."""
    if _flag(command.flags, "from"):
        return []
    return [word for word in command.words[:-1] if not (command.heredocs and word.startswith("<<"))]


def _remote(source: str) -> bool:
    """An ADD source that is fetched, not read from the context: a URL or a git repository."""
    return "://" in source or source.startswith("git@")


def _mount_sources(flags: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(spec, raw source) of each ``--mount`` that binds the context: type bind, no ``from=``."""
    for flag in flags:
        key, _, spec = flag.removeprefix("--").partition("=")
        if key.lower() != "mount":
            continue
        kind, source, origin = "bind", ".", ""
        for item in next(csv.reader([spec]), []):  # as BuildKit: CSV fields, a value may be quoted
            name, _, value = item.partition("=")
            name = name.strip().lower()
            if name == "type":
                kind = value.lower()
            elif name in ("source", "src"):
                source = value
            elif name == "from":
                origin = value
        if kind == "bind" and not origin:
            yield spec, source


def _why(text: str) -> str:
    line = text.split("\n", 1)[0].strip()
    return line if len(line) <= _WHY_WIDTH else line[: _WHY_WIDTH - 3] + "..."


def _normalise(source: str) -> str:
    """A source as a path from the context root: clamped at the root, "." for the root itself."""
    return posixpath.normpath("/" + source).lstrip("/") or "."


def _stages(commands: tuple[_Command, ...]) -> tuple[list[_Command], list[list[_Command]]]:
    """The commands before the first FROM, and each stage's commands after its FROM."""
    head: list[_Command] = []
    stages: list[list[_Command]] = []
    for command in commands:
        if command.keyword == "FROM":
            stages.append([])
        else:
            (stages[-1] if stages else head).append(command)
    return head, stages


def _env_names(command: _Command) -> set[str]:
    if command.keyword != "ENV":
        return set()
    return set(command.words[0::2])  # (name, value) pairs, also for the legacy ``ENV name value``


# --- ONBUILD triggers -----------------------------------------------------------------------------


def _trigger_reads(command: _Command, *, path: str, suffix: str) -> ContextReads:
    """The reads of one ONBUILD trigger in the build that runs it (not substituted)."""
    expression = _ONBUILD.sub("", command.original, count=1)
    try:
        inner = _parse(expression)
    except _Unparsable as exc:
        return ContextReads(reads=(), whole=f"{path}:{command.line}: BuildKit cannot parse the trigger: {exc}")
    why = _why(command.original)
    if len(why) + len(suffix) > _WHY_WIDTH:
        why = why[: max(0, _WHY_WIDTH - len(suffix) - 3)] + "..."
    why = (why + suffix)[:_WHY_WIDTH]
    if not inner:
        return ContextReads(reads=())
    trigger = inner[0]
    raws: list[str] = []
    if trigger.keyword in ("COPY", "ADD"):
        raws = [word for word in _copy_sources(trigger) if not word.startswith("<<")]
    elif trigger.keyword == "RUN":
        raws = [source for _, source in _mount_sources(trigger.flags)]
    reads: list[Read] = []
    for raw in raws:
        if "$" in raw:
            message = f"ONBUILD {trigger.keyword} source {raw} holds '$': a trigger is substituted in the child's build"
            return ContextReads(reads=tuple(reads), whole=f"{path}:{command.line}: {message}")
        try:
            value = _Lexer(raw, {}, "\\").expand()  # the child parses triggers with the default escape
        except ValueError as exc:
            return ContextReads(reads=tuple(reads), whole=f"{path}:{command.line}: trigger source {raw}: {exc}")
        if trigger.keyword == "ADD" and _remote(value):
            continue
        source = _normalise(value)
        glob = _GLOB.search(source) is not None
        reads.append(Read(source=source, glob=glob, line=command.line, why=why, origin=path))
    return ContextReads(reads=tuple(reads))


# --- Entry points ---------------------------------------------------------------------------------


def context_reads(
    text: str,
    *,
    path: str,
    build_args: Mapping[str, str],
    target: str | None,
    platform: str | None,
    base_triggers: Callable[[str], ContextReads | None] = lambda ref: None,
) -> ContextReads:
    """What building ``target`` (default: the last stage) on ``platform`` reads from the build context.

    ``base_triggers(reference)`` gives the reads of the ONBUILD triggers of an image a needed stage is
    built FROM (None: it has none). ``path`` names the Dockerfile in reasons and errors; a
    :class:`DockerfileError` of :func:`analyze` propagates.
    """
    info = analyze(text, path=path, build_args=build_args, target=target, platform=platform)
    try:
        commands = _parse(text)
    except _Unparsable as exc:
        return ContextReads(reads=(), whole=f"{path}: BuildKit's parser rejects it: {exc}")
    head, stages = _stages(commands)
    if len(stages) != len(info.stages):
        reason = f"{path}: BuildKit's parser finds {len(stages)} FROM, the analysis {len(info.stages)}"
        return ContextReads(reads=(), whole=reason)
    needed = set(info.needed_stages)
    env_names = {name for index in needed for command in stages[index] for name in _env_names(command)}
    escape = escape_token(split_lines(text), path)
    walker = _Walker(path=path, escape=escape, build_args=build_args, platform=platform, env_names=env_names)
    for command in head:
        if command.keyword == "ARG":
            walker.arg(command, walker.globals, is_global=True)
    scopes: list[_Scope] = []
    for stage, stage_commands in zip(info.stages, stages, strict=True):
        base = stage.base_stage
        scope = _Scope() if base is None else scopes[base].copy()
        scopes.append(scope)
        if stage.index in needed:
            if base is not None:  # BuildKit runs the ONBUILD triggers of the stage it is built on
                name = info.stages[base].name or str(base)
                for command in stages[base]:
                    if command.keyword == "ONBUILD":
                        _merge(walker, _trigger_reads(command, path=path, suffix=f" (trigger of stage {name})"))
            elif stage.base != _SCRATCH and (triggers := base_triggers(stage.base)) is not None:
                _merge(walker, triggers)
        for command in stage_commands:
            if command.keyword == "ARG":
                walker.arg(command, scope, is_global=False)
            elif stage.index in needed:
                walker.command(command, scope)
    return ContextReads(reads=tuple(walker.reads), whole=walker.whole)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One ``RUN --mount`` of a needed stage."""

    type: str  # bind (the default), cache, tmpfs, secret, ssh
    line: int  # 1-based line of the RUN


def run_mounts(
    text: str, *, path: str, build_args: Mapping[str, str], target: str | None, platform: str | None
) -> tuple[Mount, ...]:
    """The ``RUN --mount`` types of the stages building ``target`` (default: the last stage) needs.

    From BuildKit's parser; a Dockerfile it rejects has none here (its build fails anyway). ONBUILD
    triggers are not followed.
    """
    info = analyze(text, path=path, build_args=build_args, target=target, platform=platform)
    try:
        _, stages = _stages(_parse(text))
    except _Unparsable:
        return ()
    if len(stages) != len(info.stages):
        return ()
    mounts = []
    for index in sorted(info.needed_stages):
        for command in stages[index]:
            if command.keyword != "RUN":
                continue
            for flag in command.flags:
                key, _, spec = flag.removeprefix("--").partition("=")
                if key.lower() == "mount":
                    mounts.append(Mount(type=_mount_type(spec), line=command.line))
    return tuple(mounts)


def _mount_type(spec: str) -> str:
    kind = "bind"
    for item in next(csv.reader([spec]), []):
        name, _, value = item.partition("=")
        if name.strip().lower() == "type":
            kind = value.strip().lower()
    return kind


def _merge(walker: _Walker, reads: ContextReads) -> None:
    walker.reads.extend(reads.reads)
    if reads.whole is not None:
        walker.problem(reads.whole)


def onbuild_reads(text: str, *, path: str, target: str | None) -> ContextReads:
    """The reads that the ONBUILD triggers of the built stage ``target`` (default: last) make in a child's build.

    Trigger sources are not substituted: one holding ``$`` makes the result whole.
    """
    info = analyze(text, path=path, target=target)
    try:
        _, stages = _stages(_parse(text))
    except _Unparsable as exc:
        return ContextReads(reads=(), whole=f"{path}: BuildKit's parser rejects it: {exc}")
    if len(stages) != len(info.stages):
        reason = f"{path}: BuildKit's parser finds {len(stages)} FROM, the analysis {len(info.stages)}"
        return ContextReads(reads=(), whole=reason)
    reads: list[Read] = []
    for command in stages[info.target_stage]:
        if command.keyword == "ONBUILD":
            trigger = _trigger_reads(command, path=path, suffix=f" (trigger of {path})")
            reads.extend(trigger.reads)
            if trigger.whole is not None:
                return ContextReads(reads=tuple(reads), whole=trigger.whole)
    return ContextReads(reads=tuple(reads))
