"""Syntax errors are reported at their line and column, at the end of a file too, and in loaded files."""

from __future__ import annotations

import pytest

from tests.workspaces import ScratchWorkspace


def one_error(ws: ScratchWorkspace) -> str:
    result = ws.run("query", "buildorder")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("ERROR ") and result.stderr.count("ERROR ") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


@pytest.mark.parametrize(
    ("build", "where"),
    [
        # Starlark cannot place a span past the final newline and said 1:1
        pytest.param('image(\n    name = "app",\n', "app/BUILD:2:18:", id="unclosed_call"),
        pytest.param('image(name = "app")\nx = [1,\n\n\n', "app/BUILD:2:8:", id="unclosed_list_then_blank_lines"),
        pytest.param('image(name = "app")\nx = (', "app/BUILD:2:6:", id="no_final_newline"),
        pytest.param('x = )\nimage(name = "app")\n', "app/BUILD:1:5:", id="a_real_first_line_error_stays"),
    ],
)
def test_syntax_error_is_located_where_it_is(workspace: ScratchWorkspace, build: str, where: str) -> None:
    workspace.write({"app/BUILD": build, "app/Dockerfile": "FROM scratch\n"})
    message = one_error(workspace)
    assert message.startswith(f"ERROR {where} Parse error: "), message


def test_syntax_error_at_the_end_of_a_loaded_file_names_that_file(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {
            "tools/defs.star": "def app(name):\n    image(name = [name,\n",
            "app/BUILD": 'load("//tools:defs.star", "app")\napp("web")\n',
            "app/Dockerfile": "FROM scratch\n",
        }
    )
    message = one_error(workspace)
    assert message.startswith("ERROR tools/defs.star:2:24: Parse error: "), message
    assert "BuildFileError" not in message and "app/BUILD" not in message


def test_load_error_is_one_clean_line_at_the_load(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'load(":nope.star", "f")\n'})
    assert one_error(workspace) == "ERROR app/BUILD:1:1: load(':nope.star'): app/nope.star does not exist\n"
