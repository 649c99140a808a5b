"""Repository and tag names checked against Docker's reference grammar."""

from __future__ import annotations

import pytest

from orchestrator.core.imageref import repository_problem, valid_repository, valid_tag


@pytest.mark.parametrize(
    "repository",
    [
        *("app", "company-base", "team/app", "a__b", "a---b", "a.b_c", "10.0.0.1/app"),
        *("localhost/app", "localhost:5000/team/app", "Registry.Example.com:5000/team/app", "[::1]:5000/app"),
    ],
)
def test_valid_repositories(repository: str) -> None:
    assert repository_problem(repository) is None
    assert valid_repository(repository)


@pytest.mark.parametrize(
    ("repository", "problem"),
    [
        ("", "it is empty"),
        ("Company-Base", "it has uppercase letters"),
        ("Company/base", "it has uppercase letters"),
        ("company base", "'company base' has ' '"),
        ("a..b", "'a..b' starts or ends with a separator"),
        ("-app", "'-app' starts or ends with a separator"),
        ("team//app", "empty path component"),
        ("app/", "empty path component"),
        ("company-base:1.0", "it holds a tag (':1.0'), which belongs in tags"),
        ("app@sha256:" + "0" * 64, "it holds a digest"),
        ("bad_host.io/app", "'bad_host.io' is not a registry host[:port]"),
        ("a" * 64, "64 hex digits"),
        ("a" * 256, "256 characters long, more than 255"),
    ],
)
def test_invalid_repositories_say_why(repository: str, problem: str) -> None:
    found = repository_problem(repository)
    assert found is not None
    assert problem in found
    assert not valid_repository(repository)


@pytest.mark.parametrize("tag", ["latest", "1.0", "v1_2-rc.3", "_x", "A" * 128])
def test_valid_tags(tag: str) -> None:
    assert valid_tag(tag)


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a b", "a/b", "a:b", "é", "A" * 129])
def test_invalid_tags(tag: str) -> None:
    assert not valid_tag(tag)
