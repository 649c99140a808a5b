"""The load cache answers only when nothing a load was derived from changed."""

from __future__ import annotations

import os
import time

import pytest

from orchestrator.cache.store import Store
from orchestrator.workspace import loadcache
from orchestrator.workspace.loading import load
from tests.workspaces import ScratchWorkspace


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by a test are seconds old at most: test the signatures, not the racy rule."""
    monkeypatch.setattr(loadcache, "RACY_WINDOW_NS", 0)


def cached(ws: ScratchWorkspace) -> bool:
    with Store(ws.cache_dir) as store:
        return loadcache.restore(store, str(ws.root)) is not None


def loaded_again(ws: ScratchWorkspace) -> None:
    time.sleep(0.01)  # every file now older than the record
    load(ws.root, explicit_root=ws.root, use_cache=True, cache_dir=str(ws.cache_dir))


def test_unchanged_workspace_is_restored_equal_to_a_fresh_load(family: ScratchWorkspace) -> None:
    loaded_again(family)
    assert cached(family)
    fresh = load(family.root, explicit_root=family.root)
    restored = load(family.root, explicit_root=family.root, use_cache=True, cache_dir=str(family.cache_dir))
    assert restored.graph.targets == fresh.graph.targets
    assert restored.graph.node_deps == fresh.graph.node_deps
    assert restored.graph.owners == fresh.graph.owners
    assert restored.packages == fresh.packages


@pytest.mark.parametrize(
    "change",
    [
        {"apps/web/BUILD": 'image(name = "web", build_args = {"NODE": "company-base"})\n'},  # a BUILD file
        {"apps/new/BUILD": 'image(name = "new")\n', "apps/new/Dockerfile": "FROM scratch\n"},  # a new package
        {"apps/api/app/extra.py": "x = 1\n"},  # a file a glob matches
        {"apps/static/Dockerfile": "FROM gcc:14 AS builder\nFROM scratch\n"},  # a Dockerfile
        {"WORKSPACE": 'workspace(platforms = ["linux/arm64"])\n'},
        {"base/sub/BUILD": 'image(name = "sub", dockerfile = "../Dockerfile")\n'},  # a subpackage
    ],
)
def test_any_input_of_loading_changing_means_a_fresh_load(family: ScratchWorkspace, change: dict[str, str]) -> None:
    loaded_again(family)
    assert cached(family)
    family.write(change)
    assert not cached(family)


def test_macro_file_change_means_a_fresh_load(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "tools/defs.star": "def app(name):\n    image(name = name)\n",
            "app/BUILD": 'load("//tools:defs.star", "app")\napp("web")\n',
            "app/Dockerfile": "FROM scratch\n",
        }
    )
    loaded_again(workspace)
    assert cached(workspace)
    workspace.write({"tools/defs.star": 'def app(name):\n    image(name = name, tags = ["v2"])\n'})
    assert not cached(workspace)


def test_removed_package_and_new_symlink_mean_a_fresh_load(family: ScratchWorkspace) -> None:
    loaded_again(family)
    os.remove(family.path("hardened/BUILD"))
    assert not cached(family)
    loaded_again(family)
    assert cached(family)
    os.symlink("../base", family.path("apps/web/linked"))
    assert cached(family)  # package discovery never follows a symlink, and no glob lists apps/web
    os.symlink("../main.py", family.path("apps/api/app/linked.py"))
    assert not cached(family)  # glob(["app/**"]) would list it


def test_a_file_that_loading_does_not_use_keeps_the_load(family: ScratchWorkspace) -> None:
    loaded_again(family)
    family.write({"report.json": "{}\n", "apps/web/notes.txt": "not an input of loading\n"})
    assert cached(family)  # the root's and a package's listing moved, but not what loading used of them
    family.write({"apps/api/app/new.py": "print()\n"})
    assert not cached(family)  # a file a glob would match
    loaded_again(family)
    os.mkdir(family.path("tools"))
    assert not cached(family)  # a new directory may hold a package


def test_recently_modified_inputs_are_never_trusted(family: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadcache, "RACY_WINDOW_NS", 3_600 * 10**9)
    loaded_again(family)
    assert not cached(family)  # everything was written within the (hour-long) window
