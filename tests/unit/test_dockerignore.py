"""Docker's .dockerignore semantics: cases from moby/patternmatcher's tests and dockerignore.ReadAll."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import WorkspaceError
from orchestrator.keys.dockerignore import NO_MATCH, IgnoreMatcher, compile_pattern, parse_dockerignore

WHEEL = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"

# (patterns, path, excluded)
CASES: list[tuple[list[str], str, bool]] = [
    # "**" in all its forms (patternmatcher TestMatches)
    (["**"], "file", True),
    (["**"], "dir/file", True),
    (["**/"], "file", True),
    (["**/"], "dir/file", True),
    (["**/**"], "dir/file", True),
    (["dir/**"], "dir/file", True),
    (["dir/**"], "dir/dir2/file", True),
    (["**/dir"], "dir", True),
    (["**/dir"], "dir/file", True),
    (["**/dir2/*"], "dir/dir2/file", True),
    (["**/dir2/**"], "dir/dir2/dir3/file", True),
    (["**file"], "file", True),
    (["**file"], "dir/file", True),
    (["**/file"], "dir/file", True),
    (["**file"], "dir/dir/file", True),
    (["**/file"], "dir/dir/file", True),
    (["**/file*"], "dir/dir/file", True),
    (["**/file*"], "dir/dir/file.txt", True),
    (["**/file*txt"], "dir/dir/file.txt", True),
    (["**/file*.txt"], "dir/dir/file.txt", True),
    (["**/file*.txt*"], "dir/dir/file.txt", True),
    (["**/**/*.txt"], "dir/dir/file.txt", True),
    (["**/**/*.txt2"], "dir/dir/file.txt", False),
    (["**/*.txt"], "file.txt", True),
    (["**/**/*.txt"], "file.txt", True),
    (["a**/*.txt"], "a/file.txt", True),
    (["a**/*.txt"], "a/dir/file.txt", True),
    (["a**/*.txt"], "a/dir/dir/file.txt", True),
    (["a/*.txt"], "a/dir/file.txt", False),
    (["a/*.txt"], "a/file.txt", True),
    (["a/*.txt**"], "a/file.txt", True),
    (["**/foo/bar"], "foo/bar", True),
    (["**/foo/bar"], "dir/foo/bar", True),
    (["**/foo/bar"], "dir/dir2/foo/bar", True),
    (["abc/**"], "abc", False),
    (["abc/**"], "abc/def", True),
    (["abc/**"], "abc/def/ghi", True),
    (["**/.foo"], ".foo", True),
    (["**/.foo"], "bar.foo", False),
    (["**foo"], "xfoo", True),  # Go's suffix fast path: a leading "**" is a plain suffix
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["a/**/b"], "a/xb", False),
    # "*" and "?" never cross a "/"
    (["*"], "file", True),
    (["*"], "dir/file", True),  # via the parent "dir"
    (["*.go"], "main.go", True),
    (["*.go"], "cmd/main.go", False),
    (["a*b"], "a/b", False),
    (["a?b"], "a/b", False),
    (["abc?def"], "abcZdef", True),
    (["abc?def"], "abcdef", False),
    ([".*"], ".foo", True),
    ([".*"], "foo", False),
    # regexp metacharacters are literal
    (["abc.def"], "abcdef", False),
    (["abc.def"], "abc.def", True),
    (["abc.def"], "abcZdef", False),
    (["a(b)c/def"], "a(b)c/def", True),
    (["a(b)c/def"], "a(b)c/xyz", False),
    (["a.|)$(}+{bc"], "a.|)$(}+{bc", True),
    (["a^b"], "a^b", True),
    ([WHEEL], WHEEL, True),
    (["dist/*.whl"], WHEEL, True),
    # character classes (Go filepath.Match: "^" negates, "!" is literal)
    (["a[b-d]e"], "ae", False),
    (["a[b-d]e"], "ace", True),
    (["a[b-d]e"], "aae", False),
    (["a[^b-d]e"], "aze", True),
    (["a[^b-d]e"], "ace", False),
    (["[abc].txt"], "b.txt", True),
    (["[abc].txt"], "d.txt", False),
    (["[!a].txt"], "!.txt", True),
    (["[!a].txt"], "b.txt", False),
    (["[\\]]"], "]", True),
    # escapes
    (["a\\\\"], "a\\", True),
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["a\\?b"], "a?b", True),
    (["a\\?b"], "axb", False),
    (["\\[x\\]"], "[x]", True),
    (["\\#x"], "#x", True),
    # a pattern matching a parent directory excludes everything below it
    (["dir"], "dir/x/y", True),
    (["dir/x"], "dir/x/y/z", True),
    (["dir/x"], "dir/xy", False),
    (["dir"], "other/dir", False),
    # exceptions: the last matching pattern wins
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["!README.md", "*.md"], "README.md", True),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/keep/deep/file", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["dir", "!dir/keep", "dir/keep/secret"], "dir/keep/secret", True),
    (["dir", "!dir\\/keep"], "dir/keep", False),  # an escaped "/" is still a "/"
    (["a/b", "!a"], "a/b/c", False),
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!" + WHEEL], WHEEL, False),
    (["**", "!dist/*.whl"], WHEEL, False),
    (["*", "!keep"], "keep", False),
    (["*", "!keep"], "other", True),
    # ReadAll: comments, whitespace, cleaning
    (["#comment"], "#comment", False),
    ([" #notcomment"], "#notcomment", True),
    (["  foo  "], "foo", True),
    (["*", "! foo"], "foo", False),
    (["/foo"], "foo", True),
    (["/foo"], "bar/foo", False),
    (["foo/"], "foo", True),
    (["foo/"], "foo/bar", True),
    (["./foo"], "foo", True),
    (["a//b"], "a/b", True),
    (["a/./b"], "a/b", True),
    (["x/../b"], "b", True),
    (["x/../../b"], "b", False),  # cleaned to "../b": outside the context, matches nothing
    (["."], "a", False),  # "for historical reasons, the pattern . is ignored"
    (["/"], "a", False),
    ([], "a", False),
]


def _matcher(patterns: list[str]) -> IgnoreMatcher:
    return IgnoreMatcher(parse_dockerignore("\n".join(patterns)))


def _walk_match(matcher: IgnoreMatcher, path: str) -> int:
    """last_match computed the way a tree walk does: parent by parent."""
    parts = path.split("/")
    match = NO_MATCH
    for depth in range(1, len(parts) + 1):
        match = matcher.last_match("/".join(parts[:depth]), match)
    return match


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_is_excluded(patterns: list[str], path: str, excluded: bool) -> None:
    matcher = _matcher(patterns)
    assert matcher.is_excluded(path) is excluded
    assert matcher.excludes(_walk_match(matcher, path)) is excluded


def test_parse_reads_lines_like_read_all() -> None:
    text = "\ufeff# comment\n\n  *.log \r\n!  keep.log\n/abs/\n./rel//x\n"
    assert [(p.text, p.exclusion) for p in parse_dockerignore(text)] == [
        ("*.log", False),
        ("keep.log", True),
        ("abs", False),
        ("rel/x", False),
    ]


def test_pattern_fields() -> None:
    pattern = compile_pattern("!a/*/c")
    assert (pattern.text, pattern.exclusion, pattern.dirs) == ("a/*/c", True, ("a", "*", "c"))
    assert pattern.matches("a/b/c")
    assert not pattern.matches("a/b/c/d")  # parent matching is the matcher's job


@pytest.mark.parametrize("bad", ["!", "!/", "[a", "[]", "[^]", "a[z-a]", "[-a]", "a\\", "x[a\\"])
def test_malformed_patterns_are_rejected(bad: str) -> None:
    with pytest.raises(WorkspaceError, match=r"bad \.dockerignore pattern") as info:
        parse_dockerignore(f"ok\n{bad}\n", source="ctx/.dockerignore")
    assert str(info.value.location) == "ctx/.dockerignore:2"


def test_last_match_reports_the_deciding_pattern() -> None:
    matcher = _matcher(["dir", "!dir/keep", "*.tmp"])
    assert matcher.last_match("other") == NO_MATCH
    assert matcher.last_match("dir/x") == 0
    assert matcher.last_match("dir/keep/x") == 1
    assert matcher.last_match("x.tmp") == 2
    assert matcher.last_match("dir/keep/x", parent=matcher.last_match("dir/keep")) == 1


@pytest.mark.parametrize(
    ("patterns", "rel_dir", "expected"),
    [
        (["dir", "!dir/keep"], "dir", True),
        (["dir", "!dir/keep"], "other", False),
        (["dir", "!dir/keep"], "dir/keep", False),  # matches the dir itself, not below it
        (["dir", "!dir/sub/*.go"], "dir", True),
        (["dir", "!dir/sub/*.go"], "dir/sub", True),
        (["dir", "!dir/sub/*.go"], "dir/other", False),
        (["dir", "!d*/keep"], "dir", True),
        (["dir", "!**/*.go"], "dir", True),
        (["dir", "!dir/**"], "dir", True),
        (["dir", "!a[^x]b"], "dir", True),  # a negated class may match "/": be conservative
        (["dir", "!dir\\/keep"], "dir", True),
        (["dir", "!other/x"], "dir", False),
        (["!dir/keep", "dir"], "dir", False),  # the later "dir" also excludes dir/keep
        (["dir"], "dir", False),
    ],
)
def test_may_reinclude_under(patterns: list[str], rel_dir: str, expected: bool) -> None:
    matcher = _matcher(patterns)
    assert matcher.may_reinclude_under(rel_dir, matcher.last_match(rel_dir)) is expected


_PARTS = st.sampled_from(["a", "b", "ab", "x.go", "*", "?", "**", "a*", "[ab]", "*.go", "."])
_PATTERNS = st.lists(
    st.tuples(st.booleans(), st.lists(_PARTS, min_size=1, max_size=3)).map(
        lambda p: ("!" if p[0] else "") + "/".join(p[1])
    ),
    max_size=5,
)
_PATHS = st.lists(st.sampled_from(["a", "b", "ab", "x.go", "c"]), min_size=1, max_size=4).map("/".join)


@given(patterns=_PATTERNS, path=_PATHS)
def test_walk_state_agrees_with_matching_from_scratch(patterns: list[str], path: str) -> None:
    matcher = _matcher(patterns)
    assert _walk_match(matcher, path) == matcher.last_match(path)


@given(patterns=_PATTERNS, path=_PATHS)
def test_may_reinclude_under_never_prunes_a_kept_path(patterns: list[str], path: str) -> None:
    matcher = _matcher(patterns)
    parts = path.split("/")
    for depth in range(1, len(parts)):
        rel_dir = "/".join(parts[:depth])
        match = matcher.last_match(rel_dir)
        if matcher.excludes(match) and not matcher.is_excluded(path):
            assert matcher.may_reinclude_under(rel_dir, match)
