"""Dockerfiles and image names that cannot be built: one clean load error (exit 2), no traceback."""

from __future__ import annotations

import pytest

from tests.unit.test_errors import error_of
from tests.workspaces import ScratchWorkspace

LATIN1 = b"FROM scratch\n# caf\xe9\nCOPY motd /etc/motd\n"


def write_latin1_dockerfile(ws: ScratchWorkspace) -> None:
    ws.write({"app/BUILD": 'image(name = "app")\n', "app/motd": "hi\n"})
    ws.path("app/Dockerfile").write_bytes(LATIN1)


@pytest.mark.parametrize("command", [["query", "buildorder"], ["hash"], ["graph"], ["build", "--dry-run"], ["lint"]])
def test_dockerfile_that_is_not_utf8_is_a_load_error_naming_the_file(
    workspace: ScratchWorkspace, command: list[str]
) -> None:
    write_latin1_dockerfile(workspace)
    message = error_of(workspace, *command)
    assert message.startswith("ERROR app/Dockerfile:2:6: not valid UTF-8 (byte 0xe9)")


def test_init_reports_a_dockerfile_that_is_not_utf8_as_a_problem(workspace: ScratchWorkspace) -> None:
    workspace.path("WORKSPACE").unlink()
    workspace.path("app").mkdir()
    workspace.path("app/Dockerfile").write_bytes(LATIN1)
    result = workspace.run("init", str(workspace.root))
    assert result.exit_code == 2, result.output
    assert result.stderr.count("ERROR ") == 1
    assert "app/Dockerfile:2:6: not valid UTF-8 (byte 0xe9)" in result.stderr
    assert "Traceback" not in result.output
    assert not workspace.path("app/BUILD").exists()


def test_dockerfile_continued_into_the_end_after_an_escape_character_is_a_load_error(
    workspace: ScratchWorkspace,
) -> None:
    workspace.write({"app/BUILD": 'image(name = "app")\n', "app/Dockerfile": "FROM scratch\nRUN echo a\\ \\\n"})
    message = error_of(workspace, "hash")
    assert message.startswith("ERROR app/Dockerfile:2: a line continuation at the end of the file")


def test_dockerfile_continued_into_the_end_loads(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'image(name = "app")\n', "app/Dockerfile": "FROM scratch\nRUN echo hi \\"})
    assert workspace.lines("query", "buildorder") == ["//app:app"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            'image(name = "app", repository = "Company-Base")',
            "ERROR app/BUILD:2:1: image(name='app'): attribute 'repository' = 'Company-Base' is not an image "
            "repository: it has uppercase letters (did you mean 'company-base'?); a repository is",
        ),
        (
            'image(name = "app", repository = "company base")',
            "attribute 'repository' = 'company base' is not an image repository: 'company base' has ' '",
        ),
        (
            'image(name = "app", repository = "company-base:1.0")',
            "attribute 'repository' = 'company-base:1.0' is not an image repository: it holds a tag (':1.0')",
        ),
        (
            'image(name = "Company_Base")',
            "image(name='Company_Base'): the target name 'Company_Base' is not an image repository, so give a "
            "'repository': it has uppercase letters (did you mean 'company_base'?)",
        ),
        (
            'image(name = "app", tags = ["1.0", "v2/beta"])',
            "ERROR app/BUILD:2:1: image(name='app'): attribute 'tags' has 'v2/beta', which is not an image tag",
        ),
        (
            'rootfs_image(name = "root", tarball = "root.tar", repository = "Root")',
            "rootfs_image(name='root'): attribute 'repository' = 'Root' is not an image repository",
        ),
        (
            'rootfs_image(name = "root", tarball = "root.tar", tags = [".hidden"])',
            "rootfs_image(name='root'): attribute 'tags' has '.hidden', which is not an image tag",
        ),
    ],
)
def test_invalid_repository_or_tag_is_a_load_error_naming_the_attribute(
    workspace: ScratchWorkspace, build: str, message: str
) -> None:
    workspace.write({"app/BUILD": f"# a comment\n{build}\n", "app/Dockerfile": "FROM scratch\n", "app/root.tar": ""})
    found = error_of(workspace, "query", "buildorder")
    assert message in found
    assert found.startswith("ERROR app/BUILD:2:1: ")


def test_registry_host_with_port_and_uppercase_host_is_a_valid_repository(workspace: ScratchWorkspace) -> None:
    build = 'image(name = "app", repository = "Registry.Example.com:5000/team/app", tags = ["1.0_rc-2"])\n'
    workspace.write({"app/BUILD": build, "app/Dockerfile": "FROM scratch\n"})
    assert workspace.lines("query", "buildorder") == ["//app:app"]
