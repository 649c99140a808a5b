"""The mapping file (``images.toml``): per Dockerfile, what init should not derive by itself.

    [images."path/to/Dockerfile"]   # relative to the adopted directory
    repository = "company/base"     # every key is optional
    tags = ["1.0"]
    name = "base"
    build_args = { VERSION = "1.0" }
    target = "runtime"
    platforms = ["linux/amd64"]

Every mistake in it becomes a :class:`Problem`; an entry with a mistake still names its Dockerfile.
"""

from __future__ import annotations

import json
import posixpath
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.adopt.naming import valid_repository, valid_tag
from orchestrator.adopt.problems import Problem, shown_path
from orchestrator.core.label import valid_name
from orchestrator.core.model import Pairs
from orchestrator.errors import did_you_mean

MAPPING_FILE = "images.toml"
_MAPPING_KEYS = ("repository", "tags", "name", "build_args", "target", "platforms")


@dataclass(frozen=True, slots=True, kw_only=True)
class MappingEntry:
    """One ``[images."path"]`` table; an empty entry for a Dockerfile the mapping does not name."""

    repository: str | None = None
    tags: tuple[str, ...] | None = None
    name: str | None = None
    build_args: Pairs = ()
    target: str | None = None
    platforms: tuple[str, ...] | None = None


def read_mapping(root: Path, given: Path | None, problems: list[Problem]) -> dict[str, MappingEntry]:
    """The entries by root-relative Dockerfile path: from ``given``, else ``root/images.toml`` if it exists."""
    path = given if given is not None else root / MAPPING_FILE
    if given is None and not path.is_file():
        return {}
    shown = shown_path(root, path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(Problem(shown, "no such mapping file"))
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(shown, f"cannot read the mapping file: {exc}"))
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(Problem(shown, f"invalid TOML: {exc}"))
        return {}
    for key in data:
        if key != "images":
            problems.append(
                Problem(shown, f'unknown key {key!r}{did_you_mean(key, ["images"])}; expected [images."path"]')
            )
    images = data.get("images", {})
    if not isinstance(images, dict):
        problems.append(Problem(shown, 'images must be tables: [images."path/to/Dockerfile"]'))
        return {}
    entries: dict[str, MappingEntry] = {}
    for raw_path, table in images.items():
        where = f"[images.{json.dumps(raw_path)}]"
        rel = posixpath.normpath(raw_path.replace("\\", "/"))
        if posixpath.isabs(rel) or rel == ".." or rel.startswith("../"):
            problems.append(Problem(shown, f"{where}: the path must be relative to {root} and stay inside it"))
        elif not isinstance(table, dict):
            problems.append(Problem(shown, f"{where} must be a table, got {type(table).__name__}"))
        elif rel in entries:
            problems.append(Problem(shown, f"{where}: {rel} is mapped twice"))
        else:
            # A bad entry still names its Dockerfile, so that a missing one is reported too.
            entries[rel] = _entry(table, shown, where, problems) or MappingEntry()
    return entries


def _entry(table: Mapping[str, Any], shown: str, where: str, problems: list[Problem]) -> MappingEntry | None:
    bad = len(problems)

    def fail(message: str) -> None:
        problems.append(Problem(shown, f"{where} {message}"))

    for key in table:
        if key not in _MAPPING_KEYS:
            fail(f"unknown key {key!r}{did_you_mean(key, _MAPPING_KEYS)}; valid keys: {', '.join(_MAPPING_KEYS)}")
    repository, name, target = table.get("repository"), table.get("name"), table.get("target")
    tags, build_args, platforms = table.get("tags"), table.get("build_args", {}), table.get("platforms")
    if repository is not None and not (isinstance(repository, str) and valid_repository(repository)):
        fail(f"repository {repository!r} is not an image repository (lowercase, e.g. company/base)")
    if tags is not None and not (isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags)):
        fail(f"tags must be a non-empty list of strings, got {tags!r}")
    elif tags is not None and (wrong := [t for t in tags if not valid_tag(t)]):
        fail(f"tags: {', '.join(map(repr, wrong))} {'is' if len(wrong) == 1 else 'are'} not valid tags")
    if name is not None and not (isinstance(name, str) and valid_name(name)):
        fail(f"name {name!r} is not a valid target name")
    if target is not None and not isinstance(target, str):
        fail(f"target must be a string, got {target!r}")
    if not (isinstance(build_args, dict) and all(isinstance(v, str) for v in build_args.values())):
        fail(f"build_args must be a table of strings, got {build_args!r}")
    if platforms is not None and not (
        isinstance(platforms, list) and all(isinstance(p, str) and len(p.split("/")) in (2, 3) for p in platforms)
    ):
        fail(f"platforms must be a list of os/arch[/variant], got {platforms!r}")
    if len(problems) > bad:
        return None
    return MappingEntry(
        repository=repository,
        tags=None if tags is None else tuple(dict.fromkeys(tags)),
        name=name,
        build_args=tuple(sorted(build_args.items())),
        target=target,
        platforms=None if platforms is None else tuple(platforms),
    )
