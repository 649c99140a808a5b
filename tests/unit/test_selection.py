"""Which context entries a Dockerfile's reads select (keys/selection.py), without a Dockerfile."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.dockerfile import ContextReads, Read
from orchestrator.keys.context import context_entries
from orchestrator.keys.selection import select_inputs

FILES = [
    "Dockerfile",
    ".dockerignore",
    "BUILD",
    "defs.star",
    "NOTES.txt",
    "a.txt",
    "b.txt",
    "src/main.py",
    "src/BUILD",
    "src/pkg/util.py",
    "src/pkg/images.lock",
    "conf/[x].conf",
    "deep/one/two/three.txt",
]


@pytest.fixture
def context(tmp_path: Path) -> Path:
    for rel in FILES:
        path = tmp_path / "ctx" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (tmp_path / "ctx" / "empty").mkdir()
    return tmp_path / "ctx"


def selected(context: Path, *sources: str) -> set[str]:
    entries = context_entries(context, Path("Dockerfile"), workspace_root=context.parent)
    reads = tuple(Read(source=s, glob=any(c in s for c in "*?["), line=1, why=f"COPY {s}") for s in sources)
    selection = select_inputs(entries, ContextReads(reads=reads), never=frozenset({".dockerignore"}))
    return set(selection.why)


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ((), set()),
        (("a.txt",), {"a.txt"}),
        (("*.txt",), {"NOTES.txt", "a.txt", "b.txt"}),  # one segment: not deep/.../three.txt
        (("?.txt",), {"a.txt", "b.txt"}),
        (("[ab].txt",), {"a.txt", "b.txt"}),
        (("[^a].txt",), {"b.txt"}),  # Go's negation
        (("src",), {"src", "src/main.py", "src/pkg", "src/pkg/util.py"}),  # no BUILD, no lock
        (("src/*",), {"src", "src/main.py", "src/pkg", "src/pkg/util.py"}),
        (("src/pkg/util.py",), {"src", "src/pkg", "src/pkg/util.py"}),  # with its parents
        (("*/pkg",), {"src", "src/pkg", "src/pkg/util.py"}),
        (("deep/**/three.txt",), {"deep", "deep/one", "deep/one/two", "deep/one/two/three.txt"}),
        (
            (".",),
            set(FILES) - {".dockerignore", "BUILD", "defs.star", "src/BUILD", "src/pkg/images.lock"}
            | {"src", "src/pkg", "conf", "deep", "deep/one", "deep/one/two", "empty"},
        ),
        (("BUILD",), {"BUILD"}),  # named by its path: an input
        (("src/BUILD",), {"src", "src/BUILD"}),
        (("BUIL?",), set()),  # a wildcard does not name it
        (("missing",), set()),
        (("empty",), {"empty"}),
    ],
)
def test_reads_select_what_docker_would_copy(context: Path, sources: tuple[str, ...], expected: set[str]) -> None:
    assert selected(context, *sources) == expected


def test_each_input_says_which_read_selected_it(context: Path) -> None:
    entries = context_entries(context, Path("Dockerfile"), workspace_root=context.parent)
    reads = (Read(source="src/pkg", glob=False, line=7, why="COPY src/pkg /p/", origin="app/Dockerfile"),)
    selection = select_inputs(entries, ContextReads(reads=reads), never=frozenset())
    assert selection.why == {
        "src": "a parent directory of an input (Docker sends it)",
        "src/pkg": "app/Dockerfile:7 COPY src/pkg /p/",
        "src/pkg/util.py": "app/Dockerfile:7 COPY src/pkg /p/",
    }
    assert [e.path for e in selection.entries] == ["src", "src/pkg", "src/pkg/util.py"]
    assert selection.whole is None


def test_a_whole_context_still_leaves_out_the_workspace_files(context: Path) -> None:
    entries = context_entries(context, Path("Dockerfile"), workspace_root=context.parent)
    selection = select_inputs(entries, ContextReads(reads=(), whole="Dockerfile:3: uses ENV"), never=frozenset())
    assert selection.whole == "Dockerfile:3: uses ENV"
    assert not {"BUILD", "defs.star", "src/BUILD", "src/pkg/images.lock"} & set(selection.why)
    assert "NOTES.txt" in selection.why and selection.why["NOTES.txt"].endswith("Dockerfile:3: uses ENV")
