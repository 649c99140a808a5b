"""Labels (``//pkg:name``) and target patterns (``//...``, ``//pkg/...``).

A label names one target. Accepted spellings: ``//pkg:name``, ``//pkg`` (name = last path element),
``:name`` and ``name`` (relative to the package being read). The canonical printed form is always
``//pkg:name`` (``//:name`` for the root package).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.errors import UnknownTargetError

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=,@~-]*$")
_PACKAGE_RE = re.compile(r"^$|^[A-Za-z0-9_.+=,@~-]+(/[A-Za-z0-9_.+=,@~-]+)*$")


@dataclass(frozen=True, slots=True, order=True)
class Label:
    """A target's identity: the package path (no leading ``//``) and the target name."""

    package: str
    name: str

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"

    @staticmethod
    def parse(text: str, *, current_package: str | None = None) -> Label:
        """Parse ``text``; relative forms need ``current_package``. Raises UnknownTargetError."""
        if text.startswith("//"):
            package, sep, name = text[2:].partition(":")
            if not sep:
                name = package.rsplit("/", 1)[-1]
        elif current_package is not None:
            package, name = current_package, text.removeprefix(":")
        else:
            raise UnknownTargetError(f"{text!r} is not a label (expected //package:name)")
        package = package.rstrip("/")
        if not _PACKAGE_RE.match(package) or ".." in package.split("/"):
            raise UnknownTargetError(f"invalid package path in label {text!r}")
        if not name or not _NAME_RE.match(name):
            raise UnknownTargetError(f"invalid target name in label {text!r}")
        return Label(package, name)


def valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))


@dataclass(frozen=True, slots=True)
class Pattern:
    """A target pattern: one label, every target of a package (``:all``), or a subtree (``/...``)."""

    package: str
    name: str | None  # None: all targets of the package (or subtree)
    recursive: bool

    def matches(self, label: Label) -> bool:
        if self.recursive:
            return not self.package or label.package == self.package or label.package.startswith(self.package + "/")
        if label.package != self.package:
            return False
        return self.name is None or self.name == label.name

    def __str__(self) -> str:
        if self.recursive:
            return f"//{self.package}/..." if self.package else "//..."
        if self.name is None:
            return f"//{self.package}:all"
        return str(Label(self.package, self.name))

    @staticmethod
    def parse(text: str) -> Pattern:
        if text in ("//...", "..."):
            return Pattern("", None, recursive=True)
        if text.endswith("/...") and text.startswith("//"):
            package = text[2:-4]
            Label.parse(f"//{package}:x")  # validates the package part
            return Pattern(package, None, recursive=True)
        if text.startswith("//") and text.endswith((":all", ":*")):
            package = text[2:].rpartition(":")[0]
            Label.parse(f"//{package}:x")
            return Pattern(package, None, recursive=False)
        label = Label.parse(text)
        return Pattern(label.package, label.name, recursive=False)


def looks_like_label(text: str) -> bool:
    """True for ``//...``-style text; anything else on the command line is an image reference."""
    return text.startswith(("//", ":")) or text == "..."
