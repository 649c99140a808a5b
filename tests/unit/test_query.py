"""Queries over the example family, through the CLI."""

from __future__ import annotations

import json

from docker.auth import INDEX_NAME

from tests.workspaces import ScratchWorkspace

ALL = [
    "//apps/api:api",
    "//apps/static:static",
    "//apps/web:web",
    "//base:company-base",
    "//hardened:secure",
    "//lang/node:company-node-base",
    "//lang/python:company-python-base",
    "//rootfs:debian",
]


def test_buildorder_puts_every_parent_before_its_children(family: ScratchWorkspace) -> None:
    order = family.lines("query", "buildorder", "//...")
    assert sorted(order) == ALL
    position = {label: i for i, label in enumerate(order)}
    edges = json.loads(family.run("graph", "--format", "json").stdout)["edges"]
    assert edges
    for parent, child in edges:
        assert position[parent] < position[child]


def test_graph_edges_follow_from_copy_from_and_templated_from(family: ScratchWorkspace) -> None:
    edges = {tuple(e) for e in json.loads(family.run("graph", "--format", "json").stdout)["edges"]}
    assert edges == {
        ("//rootfs:debian", "//base:company-base"),
        ("//base:company-base", "//lang/node:company-node-base"),
        ("//base:company-base", "//lang/python:company-python-base"),
        ("//lang/node:company-node-base", "//apps/web:web"),
        ("//lang/python:company-python-base", "//apps/api:api"),
        ("//apps/static:static", "//hardened:secure"),
    }


def test_rdeps_of_a_base_is_exactly_its_transitive_dependents(family: ScratchWorkspace) -> None:
    assert family.lines("query", "rdeps", "//base:company-base") == [
        "//apps/api:api",
        "//apps/web:web",
        "//lang/node:company-node-base",
        "//lang/python:company-python-base",
    ]


def test_rdeps_depth_one_is_direct_dependents_only(family: ScratchWorkspace) -> None:
    assert family.lines("query", "rdeps", "--depth", "1", "//base:company-base") == [
        "//lang/node:company-node-base",
        "//lang/python:company-python-base",
    ]


def test_rdeps_accepts_an_image_reference_a_target_produces(family: ScratchWorkspace) -> None:
    assert family.lines("query", "rdeps", "company-base") == family.lines("query", "rdeps", "//base:company-base")
    assert family.lines("query", "rdeps", "debian:bookworm")[0] == "//apps/api:api"


def test_rdeps_of_external_image_includes_grandchildren(family: ScratchWorkspace) -> None:
    assert family.lines("query", "rdeps", "gcc:13") == ["//apps/static:static", "//hardened:secure"]
    assert family.lines("query", "rdeps", "--depth", "1", "gcc:13") == ["//apps/static:static"]
    assert family.lines("query", "rdeps", "alpine:3.19") == ["//apps/web:web"]
    assert family.lines("query", "rdeps", f"{INDEX_NAME}/library/alpine:3.19") == ["//apps/web:web"]


def test_external_base_in_an_unused_stage_is_not_a_dependency(family: ScratchWorkspace) -> None:
    result = family.run("query", "rdeps", "golang:1.21")
    assert result.exit_code == 2
    assert "no Dockerfile uses it" in result.stderr


def test_deps_are_transitive_unless_depth(family: ScratchWorkspace) -> None:
    assert family.lines("query", "deps", "//apps/web") == [
        "//base:company-base",
        "//lang/node:company-node-base",
        "//rootfs:debian",
    ]
    assert family.lines("query", "deps", "--depth", "1", "//apps/web:web") == ["//lang/node:company-node-base"]


def test_json_output_is_one_document(family: ScratchWorkspace) -> None:
    result = family.run("query", "deps", "--output", "json", "//hardened:secure")
    assert json.loads(result.stdout) == ["//apps/static:static"]


def test_affected_files_maps_to_owners_and_their_rdeps(family: ScratchWorkspace) -> None:
    assert family.lines("query", "affected", "--files", "lang/python/pip.conf") == [
        "//apps/api:api",
        "//lang/python:company-python-base",
    ]
    assert family.lines("query", "affected", "--files", "base/motd") == [
        "//apps/api:api",
        "//apps/web:web",
        "//base:company-base",
        "//lang/node:company-node-base",
        "//lang/python:company-python-base",
    ]


def test_affected_ignores_files_the_dockerignore_excludes(family: ScratchWorkspace) -> None:
    assert family.lines("query", "affected", "--files", "apps/web/debug.log") == []
    assert family.lines("query", "affected", "--files", "apps/web/secrets/key.pem") == []
    assert family.lines("query", "affected", "--files", "apps/web/src/index.js") == ["//apps/web:web"]


def test_affected_counts_only_files_the_dockerfile_reads(family: ScratchWorkspace) -> None:
    assert family.lines("query", "affected", "--files", "apps/static/notes.txt") == []
    assert family.lines("query", "affected", "--files", "apps/web/deleted-long-ago.txt") == []
    assert family.lines("query", "affected", "--files", "apps/web/src/gone.js") == ["//apps/web:web"]


def test_affected_with_srcs_counts_only_declared_files(family: ScratchWorkspace) -> None:
    assert family.lines("query", "affected", "--files", "apps/api/notes.txt") == []
    assert family.lines("query", "affected", "--files", "apps/api/app/main.py") == ["//apps/api:api"]


def test_affected_build_file_and_workspace(family: ScratchWorkspace) -> None:
    assert family.lines("query", "affected", "--files", "hardened/BUILD") == ["//hardened:secure"]
    assert len(family.lines("query", "affected", "--files", "WORKSPACE")) == len(ALL)


def test_affected_since_git_revision(family: ScratchWorkspace) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(family.root), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "empty")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "family")
    family.path("lang/node/.npmrc").write_text("fund=true\n")  # unstaged
    family.write({"apps/api/app/new.py": "X = 1\n"})  # untracked
    family.write({"apps/static/extra.h": "#define X 1\n"})  # untracked, and no instruction reads it
    assert family.lines("query", "affected", "--since", "HEAD") == [
        "//apps/api:api",
        "//apps/web:web",
        "//lang/node:company-node-base",
    ]


def test_graph_dot_and_mermaid_name_every_target(family: ScratchWorkspace) -> None:
    dot = family.run("graph", "--format", "dot").stdout
    mermaid = family.run("graph", "--format", "mermaid").stdout
    for label in ALL:
        assert f'"{label}"' in dot
        assert label in mermaid
    assert '"gcc:13" -> "//apps/static:static" [style=dashed];' in dot


def test_query_works_from_a_subdirectory_without_workspace_flag(family: ScratchWorkspace) -> None:
    result = family.run("query", "deps", "//lang/node:company-node-base", cwd=family.path("apps/web"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["//base:company-base", "//rootfs:debian"]
