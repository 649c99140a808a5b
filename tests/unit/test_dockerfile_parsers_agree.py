"""Our lexer and BuildKit's own parser (the ``dockerfile`` package) find the same instructions.

Same keywords, same first lines, for every Dockerfile of the examples and the tests, and for a few
texts that exercise the hard parts of the reading (continuations, comments inside them, heredocs,
the escape directive).
"""

from __future__ import annotations

from pathlib import Path

import dockerfile
import pytest

from orchestrator.dockerfile.lexer import escape_token, open_end, read_instructions, split_lines
from orchestrator.errors import DockerfileError

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(
    path for base in (ROOT / "BUILD.examples", ROOT / "tests") for path in base.glob("**/Dockerfile*") if path.is_file()
)

TEXTS = {
    "continuation": "FROM alpine\nRUN echo a \\\n  b \\\n  c\nCOPY a /b\n",
    "comment inside a continuation": "FROM alpine\nRUN echo a \\\n# a comment\n  b\nUSER app\n",
    "blank line inside a continuation": "FROM alpine\nRUN echo a \\\n\n  b\nUSER app\n",
    "escaped escape ends the line": "FROM alpine\nRUN echo a\\\\\nUSER app\n",
    "heredoc": "FROM alpine\nCOPY <<EOF /x\nRUN not an instruction\nEOF\nRUN <<-EOT sh\n\techo hi\n\tEOT\nUSER app\n",
    "escape directive": "# escape=`\nFROM alpine\nRUN echo a `\n  b\nCOPY c:\\x /y\n",
    "lower-case keywords": "from alpine as b\nrun echo hi\nonbuild copy . /app\n",
    "continued into the end": "FROM alpine\nRUN echo hi \\",
    "json form": 'FROM alpine\nCOPY ["a b", "/c/"]\nCMD ["sh", "-c", "echo"]\n',
}


def ours(text: str) -> list[tuple[str, int]]:
    lines = split_lines(text)
    escape = escape_token(lines, "Dockerfile")
    instructions = read_instructions(lines, escape, "Dockerfile")
    open_end(lines, instructions, escape, "Dockerfile")
    return [(instruction.keyword, instruction.line) for instruction in instructions]


def buildkits(text: str) -> list[tuple[str, int]]:
    return [(command.cmd.lower(), command.start_line) for command in dockerfile.parse_string(text)]


def test_there_are_dockerfiles_to_compare() -> None:
    assert len(FILES) >= 5, FILES


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_both_parsers_read_the_same_instructions_from_each_dockerfile(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        expected = ours(text)
    except DockerfileError:  # rejected on purpose (see test_bad_dockerfiles.py): nothing to compare
        pytest.skip("our lexer rejects it on purpose")
    assert buildkits(text) == expected


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_both_parsers_read_the_same_instructions_from_hard_texts(text: str) -> None:
    assert buildkits(text) == ours(text)
