from __future__ import annotations

from pathlib import Path

import pytest

from tests.workspaces import FAMILY, ScratchWorkspace


@pytest.fixture
def workspace(tmp_path: Path) -> ScratchWorkspace:
    """An empty workspace (just a WORKSPACE file) with its own cache directory."""
    ws = ScratchWorkspace(root=tmp_path / "ws", cache_dir=tmp_path / "cache")
    ws.write({"WORKSPACE": ""})
    return ws


@pytest.fixture
def family(workspace: ScratchWorkspace) -> ScratchWorkspace:
    """The example family of DESIGN.md written into ``workspace``."""
    workspace.write(FAMILY)
    return workspace
