"""Content tags and the key label: how an image is named by, and carries, the key it was built for.

Every built image is tagged ``repository:key-<key>`` (its content tag) and labelled
``org.orchestrator.key=<key>``; an image found under a content tag is used only when it carries that
key's label and is of the node's platform.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.core.platforms import normalize

KEY_LABEL = "org.orchestrator.key"
CONTENT_TAG_PREFIX = "key-"


def content_tag(key: str) -> str:
    return f"{CONTENT_TAG_PREFIX}{key}"


def content_image(repository: str, key: str) -> str:
    return f"{repository}:{content_tag(key)}"


def image_problem(labels: Mapping[str, str], platform: str, *, key: str, expected_platform: str) -> str | None:
    """Why an image found under a content tag must not be used (another key or platform), or None."""
    found_key = labels.get(KEY_LABEL)
    if found_key != key:
        return f"carries key label {found_key!r}, not {key!r}"
    if not platform or normalize(platform) != normalize(expected_platform):
        return f"is for platform {platform or 'several platforms'!r}, not {expected_platform}"
    return None
