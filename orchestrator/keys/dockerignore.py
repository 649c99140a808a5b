"""Docker's exact ``.dockerignore`` semantics, without importing the ``docker`` package.

A port of moby/buildkit's ``dockerignore.ReadAll`` (reading the file) and of
moby/patternmatcher (``New``, ``Pattern.compile``/``match``, ``MatchesOrParentMatches``):

* one pattern per line; a line whose *first* character is ``#`` is a comment (``  #x`` is a
  pattern); surrounding whitespace is trimmed and empty lines are skipped;
* a leading ``!`` makes an exception that re-includes what it matches;
* patterns are cleaned like Go's ``filepath.Clean`` (``./a``, ``a/``, ``a//b`` and ``x/../a`` all
  become ``a``) and a leading ``/`` is dropped: every pattern is relative to the context root;
* ``*`` matches a run of non-``/`` characters, ``?`` one non-``/`` character, ``[...]`` a class
  (``^`` negates, as in Go's ``filepath.Match``), ``\\`` escapes the next character, and ``**``
  any number of directories, including none (``**/foo`` matches ``foo``, ``foo/**`` everything
  below ``foo``);
* a pattern matches a path when it matches the path itself or one of its parent directories,
  and the *last* matching pattern decides: the path is excluded unless that one is an exception.

Deviations, all on patterns Docker would mishandle or reject at build time: ``\\x`` is always a
literal ``x`` (Go hands ``\\d`` to its regexp engine as a digit class), ``^`` outside a class is
a literal (in a wildcard pattern Go's regexp reads it as an anchor that never matches), and
``*``/``?`` inside a class are literals. And BuildKit matches incrementally with
``MatchesUsingParentResults``, which disagrees with ``MatchesOrParentMatches`` (implemented here,
as the classic builder does) when a pattern is repeated after an exception: with ``a``, ``!a/b``,
``a`` BuildKit keeps ``a/b``, we exclude it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from orchestrator.errors import Location, WorkspaceError

NO_MATCH: Final = -1
"""``IgnoreMatcher.last_match`` when no pattern matches (also the state of the context root)."""

# Go's unicode.IsSpace, which strings.TrimSpace uses (Python's str.strip() also trims \x1c-\x1f).
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_UTF8_BOM: Final = "\ufeff"


class _Kind(enum.Enum):
    """patternmatcher's matchType: literal patterns skip the regexp engine, with their own rules."""

    EXACT = "exact"  # no wildcard: path == pattern
    PREFIX = "prefix"  # "foo/**" or "foo**": path starts with "foo/" / "foo"
    SUFFIX = "suffix"  # "**/foo" or "**foo": path ends with "/foo" / "foo" ("**/foo" also matches "foo")
    REGEXP = "regexp"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pattern:
    """One cleaned ``.dockerignore`` pattern."""

    text: str  # cleaned, without the leading "!"
    exclusion: bool  # an "!" exception: re-includes what it matches
    regex: re.Pattern[str]  # use with fullmatch()
    dirs: tuple[str, ...]  # text split on "/"

    def matches(self, rel_path: str) -> bool:
        """Whether the pattern matches ``rel_path`` itself (parent directories aside)."""
        return self.regex.fullmatch(rel_path) is not None


def parse_dockerignore(text: str, *, source: str = ".dockerignore") -> tuple[Pattern, ...]:
    """The patterns of an ignore file's ``text``; ``source`` names the file in errors."""
    text = text.removeprefix(_UTF8_BOM)
    patterns: list[Pattern] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if raw.startswith("#"):  # checked before trimming, as ReadAll does
            continue
        line = _read_all_normalise(raw)
        if not line:
            continue
        try:
            patterns.append(compile_pattern(line))
        except ValueError as exc:
            raise WorkspaceError(
                f"bad .dockerignore pattern {line!r}: {exc}", location=Location(source, lineno)
            ) from None
    return tuple(patterns)


def compile_pattern(line: str) -> Pattern:
    """One pattern, as patternmatcher.New compiles it; ValueError when it is malformed."""
    line = _go_clean(line.strip(_GO_SPACE))
    exclusion = line.startswith("!")
    if exclusion:
        if line == "!":
            raise ValueError('illegal exclusion pattern: "!"')
        line = line[1:]
    return Pattern(text=line, exclusion=exclusion, regex=_compile(line), dirs=tuple(line.split("/")))


class IgnoreMatcher:
    """Decides which context paths a list of patterns excludes.

    Walks pass each directory's ``last_match`` down to its children, so a path costs one regex
    test per pattern *after* the one that decided its parent (ancestors are never re-tested).
    """

    __slots__ = ("_exceptions", "_exclusion", "_fullmatch", "patterns")

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.patterns: tuple[Pattern, ...] = tuple(patterns)
        self._fullmatch = tuple(p.regex.fullmatch for p in self.patterns)
        self._exclusion = tuple(p.exclusion for p in self.patterns)
        self._exceptions = tuple((i, _Reach.of(p)) for i, p in enumerate(self.patterns) if p.exclusion)

    def last_match(self, rel_path: str, parent: int | None = None) -> int:
        """Index of the last pattern matching ``rel_path`` or a parent directory, else NO_MATCH.

        ``parent`` is this method's result for the parent directory (NO_MATCH for the context
        root); without it every parent directory is tested.
        """
        if parent is None:
            return self._last_match_from_scratch(rel_path)
        fullmatch = self._fullmatch
        # Patterns up to `parent` cannot change the answer: the parent's match covers us too.
        for i in range(len(fullmatch) - 1, parent, -1):
            if fullmatch[i](rel_path) is not None:
                return i
        return parent

    def excludes(self, match: int) -> bool:
        """Whether a ``last_match`` result means "excluded"."""
        return match != NO_MATCH and not self._exclusion[match]

    def is_excluded(self, rel_path: str, parent: int | None = None) -> bool:
        """Whether Docker leaves ``rel_path`` (clean, relative, "/"-separated) out of the context."""
        return self.excludes(self.last_match(rel_path, parent))

    def may_reinclude_under(self, rel_dir: str, match: int = NO_MATCH) -> bool:
        """Whether an exception could match something strictly below ``rel_dir``.

        If not, an excluded directory need not be walked. ``match`` is ``rel_dir``'s own
        ``last_match``: only exceptions after it can re-include anything below. Conservative:
        it may say True for a pattern that turns out to match nothing there.
        """
        parts = rel_dir.split("/")
        return any(reach.below(parts) for i, reach in self._exceptions if i > match)

    def _last_match_from_scratch(self, rel_path: str) -> int:
        parts = rel_path.split("/")
        ancestors = ["/".join(parts[:n]) for n in range(1, len(parts))]
        for i in range(len(self._fullmatch) - 1, NO_MATCH, -1):
            fullmatch = self._fullmatch[i]
            if fullmatch(rel_path) is not None or any(fullmatch(a) is not None for a in ancestors):
                return i
        return NO_MATCH


@dataclass(frozen=True, slots=True, kw_only=True)
class _Reach:
    """Which directories a pattern can match below: its leading one-component-each parts."""

    components: tuple[re.Pattern[str], ...]  # each matches exactly one path component
    open_ended: bool  # the rest ("**", classes, escaped "/") may span any number of directories

    @classmethod
    def of(cls, pattern: Pattern) -> _Reach:
        components: list[re.Pattern[str]] = []
        for part in pattern.dirs:
            if "**" in part or "[" in part:  # a class may match "/" ("[^a]", "[.-0]")
                return cls(components=tuple(components), open_ended=True)
            try:
                components.append(_compile(part))
            except ValueError:  # e.g. "a\/b" split into "a\" and "b"
                return cls(components=tuple(components), open_ended=True)
        return cls(components=tuple(components), open_ended=False)

    def below(self, parts: Sequence[str]) -> bool:
        """Whether the pattern may match a path strictly below the directory ``parts``."""
        for depth, part in enumerate(parts):
            if depth == len(self.components):
                return self.open_ended
            if self.components[depth].fullmatch(part) is None:
                return False
        return self.open_ended or len(self.components) > len(parts)


def _read_all_normalise(raw: str) -> str:
    """One line as dockerignore.ReadAll returns it ('' to skip)."""
    line = raw.strip(_GO_SPACE)
    if not line:
        return ""
    invert = line.startswith("!")
    if invert:
        line = line[1:].strip(_GO_SPACE)
    if line:
        line = _go_clean(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
    return "!" + line if invert else line


def _go_clean(path: str) -> str:
    """Go's filepath.Clean on a "/"-separated path."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts and parts[-1] != "..":
            parts.pop()
        elif not rooted:  # ".." above the root of a rooted path vanishes
            parts.append("..")
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _compile(text: str) -> re.Pattern[str]:
    """The regex (for fullmatch) equivalent to patternmatcher's Pattern.match on ``text``."""
    kind, body = _translate(text)
    if kind is _Kind.EXACT:
        return re.compile(re.escape(text))
    if kind is _Kind.PREFIX:  # strings.HasPrefix: any characters may follow, newlines too
        return re.compile(re.escape(text[:-2]) + "(?s:.*)")
    if kind is _Kind.SUFFIX:
        suffix = text[2:]
        alternatives = ["(?s:.*)" + re.escape(suffix)]
        if suffix.startswith("/"):  # "**/foo" matches "foo" itself
            alternatives.append(re.escape(suffix[1:]))
        return re.compile("(?:" + "|".join(alternatives) + ")")
    return re.compile(body)


def _translate(text: str) -> tuple[_Kind, str]:
    """Port of Pattern.compile: the match kind and, for REGEXP, the regex body."""
    kind = _Kind.EXACT
    out: list[str] = []
    i, n, token = 0, len(text), 0
    while i < n:
        ch = text[i]
        i += 1
        if ch == "*" and i < n and text[i] == "*":
            i += 1
            if i < n and text[i] == "/":  # "**/" is "**"
                i += 1
            if i < n:
                out.append("(?:.*/)?")
                kind = _Kind.REGEXP
            elif kind is _Kind.EXACT:
                kind = _Kind.PREFIX
            else:
                out.append(".*")
                kind = _Kind.REGEXP
            if token == 0:  # Go: a leading "**" always makes a suffix match
                kind = _Kind.SUFFIX
        elif ch == "*":
            out.append("[^/]*")
            kind = _Kind.REGEXP
        elif ch == "?":
            out.append("[^/]")
            kind = _Kind.REGEXP
        elif ch == "\\":
            if i == n:
                raise ValueError("trailing backslash")
            out.append(re.escape(text[i]))
            i += 1
            kind = _Kind.REGEXP
        elif ch == "[":
            klass, i = _translate_class(text, i)
            out.append(klass)
            kind = _Kind.REGEXP
        else:
            out.append(re.escape(ch))
        token += 1
    return kind, "".join(out)


def _translate_class(text: str, i: int) -> tuple[str, int]:
    """The class opened just before ``text[i]``, as filepath.Match parses it; and the index after it."""
    out = ["["]
    if text.startswith("^", i):
        out.append("^")
        i += 1
    first = True
    while not (text.startswith("]", i) and not first):
        low, i = _class_char(text, i)
        item = re.escape(low)
        if text.startswith("-", i):
            high, i = _class_char(text, i + 1)
            if high < low:
                raise ValueError(f"bad character range {low}-{high}")
            item += "-" + re.escape(high)
        out.append(item)
        first = False
    return "".join(out) + "]", i + 1


def _class_char(text: str, i: int) -> tuple[str, int]:
    """One (possibly escaped) character of a class, like filepath.Match's getEsc."""
    if i >= len(text):
        raise ValueError("unterminated character class")
    if text[i] in "-]":
        raise ValueError("bad character class")
    if text[i] == "\\":
        i += 1
        if i == len(text):
            raise ValueError("trailing backslash")
    return text[i], i + 1
