"""Bad input: one ERROR block, exit 2, file:line where there is one, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import failure_reason
from tests.workspaces import ScratchWorkspace


def error_of(ws: ScratchWorkspace, *args: str, code: int = 2) -> str:
    result = ws.run(*args)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("ERROR "), result.stderr
    assert result.stderr.count("ERROR ") == 1
    assert "Traceback" not in result.output
    return result.stderr


# (files written, command, what the message must contain), one case each
BAD_WORKSPACES = [
    pytest.param(
        {"app/BUILD": 'image(\n    name = "app"\n    tags = ["x"],\n)\n', "app/Dockerfile": "FROM x\n"},
        ("query", "buildorder"),
        ["ERROR app/BUILD:3:5:"],
        id="build_file_syntax_error_names_file_line_column",
    ),
    pytest.param(
        {"app/BUILD": 'image(name = "app", build_arg = {})\n', "app/Dockerfile": "FROM x\n"},
        ("hash",),
        ["app/BUILD:1:1", "unknown attribute 'build_arg'", "did you mean 'build_args'"],
        id="unknown_attribute_is_named_with_a_suggestion",
    ),
    pytest.param(
        {"app/BUILD": 'image(name = "app", tags = "latest")\n', "app/Dockerfile": "FROM x\n"},
        ("hash",),
        ["attribute 'tags' must be a list of strings, got str 'latest'"],
        id="wrong_attribute_type",
    ),
    pytest.param(
        {"app/BUILD": 'image(name = "app")\n'},
        ("query", "buildorder"),
        ["app/BUILD:1:1", "dockerfile 'Dockerfile' does not exist"],
        id="missing_dockerfile",
    ),
    pytest.param(
        {"app/BUILD": 'load("//../evil:defs.star", "x")\n'},
        ("hash",),
        ["app/BUILD:1"],
        id="load_escaping_the_workspace_is_rejected",
    ),
    pytest.param(
        {
            "tools/defs.star": "def app(name):\n    image(name = name, colour = 1)\n",
            "app/BUILD": 'load("//tools:defs.star", "app")\napp("web")\n',
            "app/Dockerfile": "FROM scratch\n",
        },
        ("hash",),
        ["tools/defs.star:2:5"],
        id="error_inside_a_macro_points_into_the_star_file",
    ),
    pytest.param(
        {"app/BUILD": 'image(name = "a")\nimage(name = "a", tags = ["v2"])\n', "app/Dockerfile": "FROM x\n"},
        ("hash",),
        ["app/BUILD:2:1", "duplicate target name 'a'"],
        id="duplicate_target_names",
    ),
    pytest.param(
        {
            "a/BUILD": 'image(name = "a", repository = "shared")\n',
            "a/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b", repository = "shared")\n',
            "b/Dockerfile": "FROM x\n",
        },
        ("hash",),
        ["two targets produce the image shared:latest: //a:a and //b:b"],
        id="two_targets_producing_one_image",
    ),
    pytest.param(
        {
            "a/BUILD": 'image(name = "a", repository = "org/base", tags = ["1.0", "latest"])\n',
            "a/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b")\n',
            "b/Dockerfile": "# comment\nFROM org/base:2.0\n",
        },
        ("hash",),
        ["b/Dockerfile:2", "tags that exist: 1.0, latest"],
        id="unknown_tag_of_an_owned_repository_lists_existing_tags",
    ),
    pytest.param(
        {
            "a/BUILD": 'image(name = "a")\n',
            "a/Dockerfile": "FROM x\n",
            "c/BUILD": 'image(name = "c")\n',
            "c/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b", base = ["//c"])\n',
            "b/Dockerfile": "FROM a\n",
        },
        ("hash",),
        ["base= says //c:c but the Dockerfile b/Dockerfile builds FROM //a:a"],
        id="base_attribute_must_agree_with_the_dockerfile",
    ),
    pytest.param(
        {
            "a/BUILD": 'image(name = "a", platforms = ["linux/amd64"])\n',
            "a/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b", platforms = ["linux/amd64", "linux/arm64"])\n',
            "b/Dockerfile": "FROM a\n",
        },
        ("hash",),
        ["b/Dockerfile:1", "linux/arm64"],
        id="child_platform_missing_from_parent",
    ),
    pytest.param(
        {"a/BUILD": 'image(name = "a")\n', "a/Dockerfile": "# nothing\nRUN true\n"},
        ("hash",),
        ["a/Dockerfile"],
        id="dockerfile_without_from",
    ),
]


@pytest.mark.parametrize(("files", "command", "expected"), BAD_WORKSPACES)
def test_bad_input_is_one_error_naming_the_place(
    workspace: ScratchWorkspace, files: dict[str, str], command: tuple[str, ...], expected: list[str]
) -> None:
    workspace.write(files)
    message = error_of(workspace, *command)
    for fragment in expected:
        assert fragment in message


def test_cycle_is_printed_one_node_per_line(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "a/BUILD": 'image(name = "a")\n',
            "a/Dockerfile": "FROM b\n",
            "b/BUILD": 'image(name = "b")\n',
            "b/Dockerfile": "FROM a:latest\n",
        }
    )
    message = error_of(workspace, "query", "buildorder")
    assert "dependency cycle" in message
    lines = [line.strip() for line in message.splitlines()]
    assert "//a:a" in lines
    assert "//b:b" in lines


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("query", "deps", "//apps/web:wbe"),
            ["no target //apps/web:wbe", "did you mean '//apps/web:web'"],
            id="unknown_label_suggests_the_close_one",
        ),
        pytest.param(
            ("query", "rdeps", "company-bse"), ["did you mean 'company-base:latest'"], id="unknown_image_reference"
        ),
    ],
)
def test_an_unknown_name_suggests_the_close_one(
    family: ScratchWorkspace, args: tuple[str, ...], expected: list[str]
) -> None:
    message = error_of(family, *args)
    for fragment in expected:
        assert fragment in message


def test_pattern_matching_nothing_exits_3(family: ScratchWorkspace) -> None:
    error_of(family, "hash", "//nothing/...", code=3)


@pytest.mark.parametrize(
    ("attribute", "what"),
    [
        ('context = "../.."', "context"),
        ('dockerfile = "../../../etc/passwd"', "dockerfile"),
        ('srcs = ["../../outside.txt"]', "srcs entry"),
    ],
)
def test_path_escaping_the_workspace_is_rejected(workspace: ScratchWorkspace, attribute: str, what: str) -> None:
    (workspace.root.parent / "outside.txt").write_text("x")
    workspace.write({"app/BUILD": f'image(name = "app", {attribute})\n', "app/Dockerfile": "FROM x\n"})
    message = error_of(workspace, "hash")
    assert "outside the workspace" in message
    assert what in message


def test_load_of_a_macro_file(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "tools/defs.star": 'def app(name):\n    image(name = name, tags = ["v1", "latest"])\n',
            "app/BUILD": 'load("//tools:defs.star", "app")\napp("web")\n',
            "app/Dockerfile": "FROM scratch\n",
        }
    )
    assert workspace.lines("query", "buildorder") == ["//app:web"]
    assert workspace.lines("query", "affected", "--files", "tools/defs.star") == ["//app:web"]


def test_base_attribute_that_agrees_is_accepted(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "a/BUILD": 'image(name = "a")\n',
            "a/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b", base = ["//a:a"])\n',
            "b/Dockerfile": "FROM a\n",
        }
    )
    assert workspace.lines("query", "deps", "//b") == ["//a:a"]


def test_no_workspace_file(tmp_path: Path) -> None:
    ws = ScratchWorkspace(root=tmp_path / "none", cache_dir=tmp_path / "c")
    ws.root.mkdir()
    assert "no WORKSPACE file" in error_of(ws, "hash")


# --- the words of a connection failure ------------------------------------------------------------


def _raised(exc: BaseException, cause: BaseException) -> BaseException:
    """``exc`` as Python leaves it when raised ``from cause``."""
    try:
        raise exc from cause
    except BaseException as raised:
        return raised


@pytest.mark.parametrize(
    ("exc", "timeouts", "expected"),
    [
        pytest.param(
            ConnectionRefusedError(111, "Connection refused"), (), "Connection refused", id="the_error_itself"
        ),
        pytest.param(
            _raised(RuntimeError("max retries"), FileNotFoundError(2, "No such file or directory")),
            (),
            "No such file or directory",
            id="under_a_cause",
        ),
        pytest.param(
            RuntimeError(OSError(104, "Connection reset by peer")), (), "Connection reset by peer", id="in_args"
        ),
        pytest.param(RuntimeError("no words"), (), "no words", id="none_found_the_exceptions_own"),
        pytest.param(_raised(RuntimeError("read"), TimeoutError()), (TimeoutError,), "timed out", id="a_timeout"),
    ],
)
def test_failure_reason_finds_the_operating_systems_words(
    exc: BaseException, timeouts: tuple[type[BaseException], ...], expected: str
) -> None:
    assert failure_reason(exc, timeouts=timeouts) == expected
