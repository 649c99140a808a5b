"""Precise inputs: a key covers what the Dockerfile reads, not the whole context directory.

The family is shaped like docker-library's buildpack-deps: ``bookworm/curl`` and ``bookworm/scm``
live inside the context of the full ``bookworm`` image, and python builds on top of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.workspaces import ScratchWorkspace

NESTED: dict[str, str] = {
    "WORKSPACE": 'workspace(name = "nested", platforms = ["linux/amd64", "linux/arm64"])\n',
    "buildpack-deps/BUILD": (
        'image(name = "curl", context = "bookworm/curl", dockerfile = "bookworm/curl/Dockerfile",\n'
        '      repository = "buildpack-deps", tags = ["bookworm-curl"])\n'
        'image(name = "scm", context = "bookworm/scm", dockerfile = "bookworm/scm/Dockerfile",\n'
        '      repository = "buildpack-deps", tags = ["bookworm-scm"])\n'
        'image(name = "full", context = "bookworm", dockerfile = "bookworm/Dockerfile",\n'
        '      repository = "buildpack-deps", tags = ["bookworm"])\n'
    ),
    "buildpack-deps/bookworm/curl/Dockerfile": "FROM debian:bookworm\nRUN echo curl > /curl\n",
    "buildpack-deps/bookworm/curl/NOTES.txt": "read by nobody\n",
    "buildpack-deps/bookworm/scm/Dockerfile": "FROM buildpack-deps:bookworm-curl\nCOPY gitconfig /etc/gitconfig\n",
    "buildpack-deps/bookworm/scm/gitconfig": "[core]\n",
    "buildpack-deps/bookworm/Dockerfile": (
        "FROM buildpack-deps:bookworm-scm\nARG TARGETARCH\nCOPY tools/${TARGETARCH}/ /usr/local/bin/\n"
    ),
    "buildpack-deps/bookworm/tools/amd64/tool": "amd64\n",
    "buildpack-deps/bookworm/tools/arm64/tool": "arm64\n",
    "buildpack-deps/bookworm/README.md": "docs\n",
    "python/BUILD": 'image(name = "python", repository = "python", tags = ["3.12-bookworm"])\n',
    "python/Dockerfile": (
        "FROM buildpack-deps:bookworm\n"
        "COPY *.sh /usr/local/bin/\n"
        "RUN --mount=type=bind,source=requirements.txt,target=/r.txt cat /r.txt\n"
        "RUN --mount=type=cache,target=/root/.cache true\n"
    ),
    "python/docker-entrypoint.sh": "#!/bin/sh\n",
    "python/requirements.txt": "requests\n",
    "python/CHANGES.md": "not read\n",
    "python/helpers/x.sh": "not matched by *.sh (one segment)\n",
}

CURL, SCM, FULL, PYTHON = (
    "//buildpack-deps:curl",
    "//buildpack-deps:scm",
    "//buildpack-deps:full",
    "//python:python",
)


@pytest.fixture
def nested(workspace: ScratchWorkspace) -> ScratchWorkspace:
    workspace.write(NESTED)
    return workspace


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {node.split()[0] for node in before if before[node] != after[node]}


@pytest.mark.parametrize(
    "path",
    [
        "buildpack-deps/bookworm/curl/NOTES.txt",  # in curl's and full's contexts, read by neither
        "buildpack-deps/bookworm/README.md",
        "buildpack-deps/bookworm/scm/new-file",  # under full's context: full COPYs only tools/
        "python/CHANGES.md",
        "python/helpers/x.sh",  # *.sh matches one path segment
    ],
)
def test_a_file_no_instruction_reads_changes_no_key(nested: ScratchWorkspace, path: str) -> None:
    before = nested.keys()
    nested.write({path: "edited\n"})
    assert nested.keys() == before


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("buildpack-deps/bookworm/scm/gitconfig", {SCM, FULL, PYTHON}),
        ("buildpack-deps/bookworm/tools/arm64/tool", {FULL, PYTHON}),
        ("python/docker-entrypoint.sh", {PYTHON}),
        ("python/new.sh", {PYTHON}),  # a new file the glob matches
        ("python/requirements.txt", {PYTHON}),  # read through RUN --mount=type=bind
    ],
)
def test_a_read_file_changes_exactly_its_image_and_descendants(
    nested: ScratchWorkspace, path: str, expected: set[str]
) -> None:
    before = nested.keys()
    nested.write({path: "edited\n"})
    assert changed(before, nested.keys()) == expected


def test_a_platform_arg_source_is_read_on_every_platform(nested: ScratchWorkspace) -> None:
    """``tools/${TARGETARCH}`` reads tools/amd64 for amd64 and tools/arm64 for arm64: both are inputs."""
    before = nested.keys()
    nested.write({"buildpack-deps/bookworm/tools/amd64/tool": "edited\n"})
    after = nested.keys()
    assert {n for n in before if before[n] != after[n]} == {
        f"{label} {platform}" for label in (FULL, PYTHON) for platform in ("linux/amd64", "linux/arm64")
    }


def test_a_build_file_comment_changes_no_key(nested: ScratchWorkspace) -> None:
    before = nested.keys()
    build = nested.path("buildpack-deps/BUILD")
    build.write_text("# a comment\n" + build.read_text())
    nested.write({"python/BUILD": NESTED["python/BUILD"] + "# another\n"})
    assert nested.keys() == before


def test_workspace_files_are_not_inputs_under_copy_dot(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "WORKSPACE": 'workspace(name = "w")\n',
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM debian:bookworm\nCOPY . /src/\n",
            "app/main.py": "print()\n",
            "app/defs.star": "X = 1\n",
            "app/images.toml": "",
        }
    )
    before = workspace.keys()
    workspace.write({"app/BUILD": 'image(name = "app")  # changed\n', "app/defs.star": "X = 2\n"})
    workspace.write({"app/images.toml": "# x\n"})
    assert workspace.keys() == before
    workspace.write({"app/main.py": "print(1)\n"})
    assert workspace.keys() != before


def test_a_workspace_file_named_by_path_is_an_input(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "WORKSPACE": 'workspace(name = "w")\n',
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM debian:bookworm\nCOPY BUILD /doc/BUILD\n",
        }
    )
    before = workspace.keys()
    workspace.write({"app/BUILD": 'image(name = "app")  # now different\n'})
    assert workspace.keys() != before


def test_an_unresolvable_source_takes_the_whole_context_and_says_why(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "WORKSPACE": 'workspace(name = "w")\n',
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM debian:bookworm\nENV DIR=src\nCOPY ${DIR}/ /src/\n",
            "app/src/a": "a\n",
            "app/other": "o\n",
        }
    )
    before = workspace.keys()
    workspace.write({"app/other": "changed\n"})
    assert workspace.keys() != before  # whole context: a change anywhere counts
    result = workspace.run("explain", "//app:app", "-o", "json")
    assert result.exit_code == 0, result.output
    inputs = json.loads(result.stdout)[0]["inputs"]
    assert inputs["context"] == "whole"
    assert "Dockerfile:3" in inputs["reason"] and "DIR" in inputs["reason"]
    assert {e["path"] for e in inputs["entries"]} == {"Dockerfile", "other", "src", "src/a"}


def test_explain_lists_each_input_and_why(nested: ScratchWorkspace) -> None:
    result = nested.run("explain", "//python:python")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    by_path = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(by_path) == {"docker-entrypoint.sh", "requirements.txt"}  # the Dockerfile is in the key anyway
    assert "python/Dockerfile:2 COPY *.sh /usr/local/bin/" in by_path["docker-entrypoint.sh"]
    assert "python/Dockerfile:3 RUN --mount" in by_path["requirements.txt"]
    assert "inputs: 2 context entries, what the Dockerfile reads" in lines


def test_verbose_hash_shows_the_inputs(nested: ScratchWorkspace) -> None:
    result = nested.run("-v", "hash", "//buildpack-deps:full")
    assert result.exit_code == 0, result.output
    assert "tools/arm64/tool" in result.stderr and "COPY tools/${TARGETARCH}/" in result.stderr
    assert "README.md" not in result.stderr


def test_onbuild_triggers_of_an_internal_base_are_inputs_of_the_child(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "WORKSPACE": 'workspace(name = "w")\n',
            "base/BUILD": 'image(name = "base")\n',
            "base/Dockerfile": "FROM debian:bookworm\nONBUILD COPY app.conf /etc/app.conf\n",
            "base/app.conf": "not the child's\n",
            "child/BUILD": 'image(name = "child")\n',
            "child/Dockerfile": "FROM base\nRUN true\n",
            "child/app.conf": "read by the trigger\n",
            "child/other": "read by nobody\n",
        }
    )
    before = workspace.keys()
    workspace.write({"child/other": "x\n"})
    assert workspace.keys() == before
    workspace.write({"child/app.conf": "changed\n"})
    assert changed(before, workspace.keys()) == {"//child:child"}


def test_a_pinned_base_recorded_with_triggers_makes_the_context_whole(workspace: ScratchWorkspace) -> None:
    lock = {
        "version": 1,
        "bases": {
            "onbuild-base:1": {"linux/amd64": {"digest": "sha256:" + "a" * 64, "source": "engine", "onbuild": True}}
        },
    }
    workspace.write(
        {
            "WORKSPACE": 'workspace(name = "w")\n',
            "app/BUILD": 'image(name = "app")\n',
            "app/Dockerfile": "FROM onbuild-base:1\nRUN true\n",
            "app/anything": "x\n",
            "images.lock": json.dumps(lock),
        }
    )
    before = workspace.keys()
    workspace.write({"app/anything": "y\n"})
    assert workspace.keys() != before


def test_an_unused_stage_reads_nothing(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "WORKSPACE": 'workspace(name = "w")\n',
            "app/BUILD": 'image(name = "app", target = "runtime")\n',
            "app/Dockerfile": (
                "FROM debian:bookworm AS dev\nCOPY dev.txt /\nFROM debian:bookworm AS runtime\nCOPY run.txt /\n"
            ),
            "app/dev.txt": "d\n",
            "app/run.txt": "r\n",
        }
    )
    before = workspace.keys()
    workspace.write({"app/dev.txt": "changed\n"})
    assert workspace.keys() == before


def test_precise_keys_are_the_same_in_a_copy_elsewhere(nested: ScratchWorkspace, tmp_path: Path) -> None:
    copy = ScratchWorkspace(root=tmp_path / "copy", cache_dir=tmp_path / "copy-cache")
    shutil.copytree(nested.root, copy.root)
    assert copy.keys() == nested.keys()


def test_a_secret_file_in_the_context_is_never_an_input(workspace: ScratchWorkspace) -> None:
    """A secret is mounted into a RUN, never sent: even ``COPY . .`` does not take its file."""
    workspace.write(
        {
            "WORKSPACE": 'workspace(name = "w")\n',
            "app/BUILD": 'image(name = "app", secrets = {"token": "file:token.txt"})\n',
            "app/Dockerfile": "FROM debian:bookworm\nCOPY . /src/\n",
            "app/token.txt": "canary-1\n",
            "app/main.py": "print()\n",
        }
    )
    before = workspace.keys()
    workspace.write({"app/token.txt": "canary-2\n"})
    assert workspace.keys() == before
    result = workspace.run("explain", "//app:app", "-o", "json")
    paths = {e["path"] for e in json.loads(result.stdout)[0]["inputs"]["entries"]}
    assert paths == {"Dockerfile", "main.py"}
