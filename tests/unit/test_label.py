from __future__ import annotations

import pytest
from docker.auth import INDEX_NAME

from orchestrator.core.imageref import ImageReference
from orchestrator.core.label import Label, Pattern
from orchestrator.errors import UnknownTargetError


@pytest.mark.parametrize(
    ("text", "package", "expected"),
    [
        ("//apps/web:web", None, "//apps/web:web"),
        ("//apps/web", None, "//apps/web:web"),
        ("//:root", None, "//:root"),
        (":api", "apps/api", "//apps/api:api"),
        ("api", "apps/api", "//apps/api:api"),
    ],
)
def test_label_forms_print_canonically(text: str, package: str | None, expected: str) -> None:
    assert str(Label.parse(text, current_package=package)) == expected


@pytest.mark.parametrize("text", ["//a/../b:c", "//a:", "web", "//a:b c"])
def test_bad_labels(text: str) -> None:
    with pytest.raises(UnknownTargetError):
        Label.parse(text)


def test_patterns() -> None:
    web = Label("apps/web", "web")
    assert Pattern.parse("//...").matches(web)
    assert Pattern.parse("//apps/...").matches(web)
    assert not Pattern.parse("//app/...").matches(web)
    assert Pattern.parse("//apps/web:all").matches(web)
    assert not Pattern.parse("//apps:all").matches(web)
    assert Pattern.parse("//apps/web").matches(web)


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest"),
    [
        ("debian", "debian", "latest", None),
        ("debian:bookworm", "debian", "bookworm", None),
        ("localhost:5000/team/app", "localhost:5000/team/app", "latest", None),
        ("localhost:5000/team/app:1.2", "localhost:5000/team/app", "1.2", None),
        ("mirror.example.org/x/y@sha256:abc", "mirror.example.org/x/y", None, "sha256:abc"),
        ("x:1@sha256:abc", "x", "1", "sha256:abc"),
    ],
)
def test_image_reference_parsing(text: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = ImageReference.parse(text)
    assert (ref.repository, ref.tag, ref.digest) == (repository, tag, digest)


def test_familiar_form_drops_the_default_registry_prefix() -> None:
    assert ImageReference.parse(f"{INDEX_NAME}/library/debian:12").familiar == ImageReference.parse("debian:12")
    assert ImageReference.parse(f"{INDEX_NAME}/team/app:1").familiar == ImageReference.parse("team/app:1")
    assert ImageReference.parse("localhost:5000/debian:12").familiar == ImageReference.parse("localhost:5000/debian:12")
