"""Golden keys: the keys of BUILD.examples and of the test family, committed.

Keys are the product's contract with every cache that exists: a refactor must never move one. When
a change moves keys on purpose (a key schema bump, said in CHANGELOG.md), regenerate the files:

    ORCHESTRATOR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden_keys.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.workspaces import FAMILY, ScratchWorkspace

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


def _compare(name: str, lines: list[str]) -> None:
    path = GOLDEN / name
    text = "".join(f"{line}\n" for line in lines)
    if os.environ.get("ORCHESTRATOR_UPDATE_GOLDEN"):
        path.write_text(text)
        return
    assert path.is_file(), f"{path} is missing: regenerate it (see this module's docstring)"
    assert text == path.read_text(), (
        f"the keys moved ({path.name}); if that is on purpose, regenerate (see this module's docstring) "
        "and say so in CHANGELOG.md"
    )


def test_keys_of_the_examples_are_the_golden_ones(tmp_path: Path) -> None:
    examples = ScratchWorkspace(root=ROOT / "BUILD.examples", cache_dir=tmp_path / "cache")
    lines = examples.lines("hash", "//...")
    assert len(lines) == 16
    _compare("keys-examples.txt", lines)


@pytest.mark.parametrize("digest", ["xxh3", "sha256"])
def test_keys_of_the_test_family_are_the_golden_ones(tmp_path: Path, digest: str) -> None:
    ws = ScratchWorkspace(root=tmp_path / "ws", cache_dir=tmp_path / "cache")
    ws.write(FAMILY)
    if digest == "sha256":
        ws.write({"WORKSPACE": 'workspace(name = "family", platforms = ["linux/amd64"], key_digest = "sha256")\n'})
    _compare(f"keys-family-{digest}.txt", ws.lines("hash", "//..."))
