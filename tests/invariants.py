"""The cache's trust invariant, checked against a real engine after every fault test.

    Every record the planner would trust names an image whose ID, content tag and key label agree,
    and no content tag ``repo:key-K`` names an image that does not carry the key label K.

A record whose content tag is gone is allowed (the planner rebuilds it); a record whose content tag
names another image, or an image with another key label, is a violation, and so is a content tag on
an image of another key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from orchestrator.cache import names
from orchestrator.core.content import CONTENT_TAG_PREFIX
from orchestrator.engine.api import KEY_LABEL

RECORD_PREFIX = "record:"  # the local socket's engine; another engine's: names.record("", url)


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    label: str
    platform: str
    image: str
    image_id: str


def records(cache_dir: Path, engine: str | None = None) -> list[Record]:
    """Every build record of one engine (None: the local socket's) in the local cache at ``cache_dir``."""
    prefix = names.record("", engine)
    store = cache_dir / "store"
    if not store.is_dir():
        return []
    found = []
    with diskcache.Cache(str(store)) as cache:
        for name in cache.iterkeys():
            if isinstance(name, str) and name.startswith(prefix):
                value = json.loads(cache[name])
                found.append(Record(**{field: value[field] for field in Record.__slots__}))
    return found


def violations(
    cache_dir: Path, api: Any, repositories: list[str] | None = None, *, engine: str | None = None
) -> list[str]:
    """What breaks the invariant, one line each (empty when it holds).

    ``api`` is the docker SDK's APIClient of the engine whose records are checked (``engine``: its URL,
    None for the local socket's); ``repositories`` limits the content-tag scan (default: the
    repositories of the records).
    """
    import docker.errors

    problems = []
    recorded = records(cache_dir, engine)
    for record in recorded:
        try:
            tagged = api.inspect_image(record.image)
        except docker.errors.NotFound:
            continue  # an untrusted record: the planner builds it again
        key_label = (tagged.get("Config") or {}).get("Labels", {}).get(KEY_LABEL)
        if tagged["Id"] != record.image_id:
            problems.append(f"record {record.key} names {record.image_id}, but {record.image} is {tagged['Id']}")
        if key_label != record.key:
            problems.append(f"record {record.key}: {record.image} carries key label {key_label!r}")
    for repository in repositories or sorted({r.image.rsplit(":", 1)[0] for r in recorded}):
        for image in api.images(name=repository):
            for reference in image.get("RepoTags") or ():
                tag = reference.rsplit(":", 1)[1]
                if not tag.startswith(CONTENT_TAG_PREFIX):
                    continue
                key_label = (image.get("Labels") or {}).get(KEY_LABEL)
                if key_label != tag.removeprefix(CONTENT_TAG_PREFIX):
                    problems.append(f"content tag {reference} names an image with key label {key_label!r}")
    return problems


def assert_invariants(
    cache_dir: Path, api: Any, repositories: list[str] | None = None, *, engine: str | None = None
) -> None:
    found = violations(cache_dir, api, repositories, engine=engine)
    assert not found, "the cache's trust invariant is broken:\n" + "\n".join(found)
