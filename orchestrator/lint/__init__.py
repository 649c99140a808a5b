"""``orchestrator lint``: hadolint's Dockerfile rules plus checks that need the family's graph.

Two sources of findings, one shape (:class:`Finding`):

- ``hadolint`` (:mod:`orchestrator.lint.hadolint`): the DL/SC rules, run once per Dockerfile;
- the family checks (:mod:`orchestrator.lint.family`): ``ORC001`` floating external bases,
  ``ORC002`` root final stage, ``ORC003`` missing OCI labels, ``ORC004`` large context without
  ``.dockerignore``, ``ORC005`` an external base found nowhere (a typo, or not pulled), ``ORC006``
  an unpinned external base with ONBUILD triggers.

:mod:`orchestrator.lint.report` attaches them to targets, applies each target's ``lint_ignore``
(``ORC900`` names an entry that silenced nothing) and renders the result. The library never
prints; the command is ``orchestrator.cli.lint_cmd``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from orchestrator.core.label import Label

__all__ = ["Finding", "Level"]


class Level(enum.StrEnum):
    """hadolint's severities, which the family checks use too."""

    error = "error"
    warning = "warning"
    info = "info"
    style = "style"

    @property
    def rank(self) -> int:
        """Higher is more severe: style 0 ... error 3."""
        return _RANKS[self]


_RANKS = {Level.style: 0, Level.info: 1, Level.warning: 2, Level.error: 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem at one place; ``target`` is None until the finding is attached to a target."""

    rule: str  # "DL3007", "SC2086", "ORC001", ...
    level: Level
    path: str  # workspace-relative file
    line: int | None  # 1-based; None when the finding is about the file (or target) as a whole
    column: int | None
    message: str
    target: Label | None = None

    def for_target(self, label: Label) -> Finding:
        return replace(self, target=label)

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.path, self.line or 0, self.column or 0, self.rule, str(self.target or ""))
