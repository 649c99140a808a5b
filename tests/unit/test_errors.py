"""Bad input: one ERROR block, exit 2, file:line where there is one, no traceback."""

from __future__ import annotations

import pytest

from tests.workspaces import ScratchWorkspace


def error_of(ws: ScratchWorkspace, *args: str, code: int = 2) -> str:
    result = ws.run(*args)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("ERROR "), result.stderr
    assert result.stderr.count("ERROR ") == 1
    assert "Traceback" not in result.output
    return result.stderr


def test_build_file_syntax_error_names_file_line_column(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'image(\n    name = "app"\n    tags = ["x"],\n)\n', "app/Dockerfile": "FROM x\n"})
    assert "ERROR app/BUILD:3:5:" in error_of(workspace, "query", "buildorder")


def test_unknown_attribute_is_named_with_a_suggestion(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'image(name = "app", build_arg = {})\n', "app/Dockerfile": "FROM x\n"})
    message = error_of(workspace, "hash")
    assert "app/BUILD:1:1" in message
    assert "unknown attribute 'build_arg'" in message
    assert "did you mean 'build_args'" in message


def test_wrong_attribute_type(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'image(name = "app", tags = "latest")\n', "app/Dockerfile": "FROM x\n"})
    message = error_of(workspace, "hash")
    assert "attribute 'tags' must be a list of strings, got str 'latest'" in message


def test_missing_dockerfile(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'image(name = "app")\n'})
    message = error_of(workspace, "query", "buildorder")
    assert "app/BUILD:1:1" in message
    assert "dockerfile 'Dockerfile' does not exist" in message


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


def test_unknown_label_suggests_the_close_one(family: ScratchWorkspace) -> None:
    message = error_of(family, "query", "deps", "//apps/web:wbe")
    assert "no target //apps/web:wbe" in message
    assert "did you mean '//apps/web:web'" in message


def test_unknown_image_reference(family: ScratchWorkspace) -> None:
    assert "did you mean 'company-base:latest'" in error_of(family, "query", "rdeps", "company-bse")


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


def test_load_escaping_the_workspace_is_rejected(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'load("//../evil:defs.star", "x")\n'})
    assert "app/BUILD:1" in error_of(workspace, "hash")


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


def test_error_inside_a_macro_points_into_the_star_file(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "tools/defs.star": "def app(name):\n    image(name = name, colour = 1)\n",
            "app/BUILD": 'load("//tools:defs.star", "app")\napp("web")\n',
            "app/Dockerfile": "FROM scratch\n",
        }
    )
    assert "tools/defs.star:2:5" in error_of(workspace, "hash")


def test_duplicate_target_names(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {"app/BUILD": 'image(name = "a")\nimage(name = "a", tags = ["v2"])\n', "app/Dockerfile": "FROM x\n"}
    )
    message = error_of(workspace, "hash")
    assert "app/BUILD:2:1" in message
    assert "duplicate target name 'a'" in message


def test_two_targets_producing_one_image(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "a/BUILD": 'image(name = "a", repository = "shared")\n',
            "a/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b", repository = "shared")\n',
            "b/Dockerfile": "FROM x\n",
        }
    )
    assert "two targets produce the image shared:latest: //a:a and //b:b" in error_of(workspace, "hash")


def test_unknown_tag_of_an_owned_repository_lists_existing_tags(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "a/BUILD": 'image(name = "a", repository = "org/base", tags = ["1.0", "latest"])\n',
            "a/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b")\n',
            "b/Dockerfile": "# comment\nFROM org/base:2.0\n",
        }
    )
    message = error_of(workspace, "hash")
    assert "b/Dockerfile:2" in message
    assert "tags that exist: 1.0, latest" in message


def test_base_attribute_must_agree_with_the_dockerfile(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "a/BUILD": 'image(name = "a")\n',
            "a/Dockerfile": "FROM x\n",
            "c/BUILD": 'image(name = "c")\n',
            "c/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b", base = ["//c"])\n',
            "b/Dockerfile": "FROM a\n",
        }
    )
    message = error_of(workspace, "hash")
    assert "base= says //c:c but the Dockerfile b/Dockerfile builds FROM //a:a" in message


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


def test_child_platform_missing_from_parent(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "a/BUILD": 'image(name = "a", platforms = ["linux/amd64"])\n',
            "a/Dockerfile": "FROM x\n",
            "b/BUILD": 'image(name = "b", platforms = ["linux/amd64", "linux/arm64"])\n',
            "b/Dockerfile": "FROM a\n",
        }
    )
    message = error_of(workspace, "hash")
    assert "b/Dockerfile:1" in message
    assert "linux/arm64" in message


def test_dockerfile_without_from(workspace: ScratchWorkspace) -> None:
    workspace.write({"a/BUILD": 'image(name = "a")\n', "a/Dockerfile": "# nothing\nRUN true\n"})
    assert "a/Dockerfile" in error_of(workspace, "hash")


def test_no_workspace_file(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    ws = ScratchWorkspace(root=Path(str(tmp_path)) / "none", cache_dir=Path(str(tmp_path)) / "c")
    ws.root.mkdir()
    assert "no WORKSPACE file" in error_of(ws, "hash")
