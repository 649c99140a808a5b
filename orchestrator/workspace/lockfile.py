"""``images.lock``: every external base pinned, per platform, to a digest (meant to be committed).

    {
      "version": 1,
      "bases": {
        "debian:bookworm": {
          "linux/amd64": {"digest": "sha256:...", "source": "engine"},
          "linux/arm64": {"digest": "sha256:...", "onbuild": true, "source": "registry"}
        }
      }
    }

``source`` says what the digest is: ``engine``, the image ID of a base imported into the local
engine (a build names it ``sha256:<id>``); ``registry``, the manifest digest of the platform's image
in the registry the reference names (a build names it ``repository@sha256:...``); ``reference``, a
digest the Dockerfile itself already gives. ``onbuild`` is there, ``true``, only when the pinned
image has ONBUILD triggers (a non-empty ``config.OnBuild`` in its image config): they run in the
child's build and may read any of its context, so the child's whole context is an input of its key.
Without the field the image has none (or, for a ``reference`` pin nothing could be asked of, none
was seen). The file is written sorted, with a final newline, so a lock that did not change is byte
for byte the same, and a lock written before ``onbuild`` existed reads the same.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.core.imageref import ImageReference
from orchestrator.core.platforms import canonical
from orchestrator.errors import Location, UsageError, WorkspaceError

LOCK_FILE = "images.lock"
LOCK_VERSION = 1
SOURCES = ("engine", "registry", "reference")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pin:
    digest: str
    source: str
    onbuild: bool = False  # the image has ONBUILD triggers (its users' whole context is an input)

    def reference(self, written: str) -> str:
        """What a build names instead of ``written``: the exact image this pin stands for."""
        if self.source == "engine":
            return self.digest  # an image ID: the classic builder takes it in FROM and --from
        parsed = ImageReference.parse(written)
        return f"{parsed.repository}@{self.digest}"


@dataclass(frozen=True, slots=True)
class Lock:
    bases: Mapping[str, Mapping[str, Pin]] = field(default_factory=dict)  # reference -> platform -> pin

    def pin(self, reference: str, platform: str) -> Pin | None:
        return self.bases.get(reference, {}).get(platform)

    def pins(self) -> Iterator[tuple[str, str, Pin]]:
        for reference, platforms in sorted(self.bases.items()):
            for platform, pin in sorted(platforms.items()):
                yield reference, platform, pin

    def digests(self) -> dict[tuple[str, str], str]:
        """(reference, platform) -> digest, what keys are made from."""
        return {(reference, platform): pin.digest for reference, platform, pin in self.pins()}

    def bases_with_triggers(self) -> frozenset[str]:
        """The references pinned, for at least one platform, to an image with ONBUILD triggers."""
        return frozenset(reference for reference, _, pin in self.pins() if pin.onbuild)


def lock_path(root: Path) -> Path:
    return root / LOCK_FILE


def read_lock(root: Path) -> Lock | None:
    """The workspace's lock, None without one; WorkspaceError naming the file when it is malformed."""
    path = lock_path(root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return parse_lock(text)


def parse_lock(text: str) -> Lock:
    """A lock from its text; WorkspaceError naming the problem."""
    try:
        data = json.loads(text)
        return _from_json(data)
    except json.JSONDecodeError as exc:
        raise WorkspaceError(
            f"not valid JSON: {exc.msg}", location=Location(LOCK_FILE, exc.lineno, exc.colno)
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkspaceError(f"{LOCK_FILE} is not a lock file of version {LOCK_VERSION}: {exc}") from None


def write_lock(root: Path, lock: Lock) -> bool:
    """Write the lock atomically; False when the file already said exactly this."""
    text = json.dumps(_to_json(lock), indent=2, sort_keys=True) + "\n"
    path = lock_path(root)
    if path.is_file() and path.read_text() == text:
        return False
    fd, partial = tempfile.mkstemp(prefix=".images.lock.", dir=root)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(partial, path)
    return True


def _to_json(lock: Lock) -> dict[str, Any]:
    bases: dict[str, dict[str, dict[str, str | bool]]] = {}
    for reference, platform, pin in lock.pins():
        written: dict[str, str | bool] = {"digest": pin.digest, "source": pin.source}
        if pin.onbuild:
            written["onbuild"] = True  # only when true: locks without triggers keep their bytes
        bases.setdefault(reference, {})[platform] = written
    return {"version": LOCK_VERSION, "bases": bases}


def _from_json(data: Any) -> Lock:
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise ValueError(f'expected an object with "version": {LOCK_VERSION}')
    bases: dict[str, dict[str, Pin]] = {}
    for reference, platforms in data["bases"].items():
        for written, pin in platforms.items():
            if pin["source"] not in SOURCES or not str(pin["digest"]).startswith("sha256:"):
                raise ValueError(f"{reference} {written}: bad pin {pin!r}")
            onbuild = pin.get("onbuild", False)
            if not isinstance(onbuild, bool):
                raise ValueError(f"{reference} {written}: bad pin {pin!r} (onbuild is true or false)")
            try:
                platform = canonical(written)  # keys look pins up by the normalized platform
            except UsageError as error:
                raise WorkspaceError(f"{reference}: {error.message}", location=Location(LOCK_FILE)) from None
            made = Pin(digest=pin["digest"], source=pin["source"], onbuild=onbuild)
            if bases.get(reference, {}).get(platform, made) != made:
                raise WorkspaceError(
                    f"{reference} is pinned twice for {platform}, differently", location=Location(LOCK_FILE)
                )
            bases.setdefault(reference, {})[platform] = made
    return Lock(bases)


def changed_pins(before: Lock | None, after: Lock | None) -> set[tuple[str, str]]:
    """(reference, platform) pairs pinned differently (another digest, or triggers) or only in one lock."""
    old = _pinned(before)
    new = _pinned(after)
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def _pinned(lock: Lock | None) -> dict[tuple[str, str], tuple[str, bool]]:
    if lock is None:
        return {}
    return {(reference, platform): (pin.digest, pin.onbuild) for reference, platform, pin in lock.pins()}
