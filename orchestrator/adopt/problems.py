"""What keeps a tree from being adopted: each :class:`Problem`, all raised at once as :class:`InitProblems`.

Errors of the loader and of the graph check are turned into problems here, so that each one names
the file it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import EXIT_BUILD_FAILED, CycleError, OrchestratorError

if TYPE_CHECKING:
    from orchestrator.adopt.planned import PlannedImage


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """Why the tree cannot be adopted as it is; ``path`` is root-relative (``a/Dockerfile:3``)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class InitProblems(OrchestratorError):
    """Everything that keeps the tree from being adopted; nothing was written (exit 2)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(set(problems)))
        count = len(self.problems)
        lines = "\n".join(map(str, self.problems))
        super().__init__(f"nothing was written: {count} problem{'s' * (count != 1)}\n{lines}")


class OutOfDateBuildFiles(OrchestratorError):
    """BUILD files init generated earlier differ from what it would write now; nothing was written (exit 1)."""

    exit_code = EXIT_BUILD_FAILED

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = tuple(sorted(paths))
        count = len(self.paths)
        super().__init__(
            f"nothing was written: {count} BUILD file{'s' * (count != 1)} generated earlier "
            f"{'differs' if count == 1 else 'differ'} from what init makes now (edited, or the tree changed): "
            f"{', '.join(self.paths)}; --force rewrites them"
        )


def problem_from(error: OrchestratorError) -> Problem:
    return Problem(str(error.location) if error.location is not None else "", error.message)


def graph_problems(error: OrchestratorError, images: Sequence[PlannedImage]) -> list[Problem]:
    """The graph check's ``error`` as problems; a cycle is reported at each Dockerfile in it."""
    if not isinstance(error, CycleError):
        return [problem_from(error)]
    dockerfiles = {str(i.label): i.dockerfile for i in images}
    cycle = " -> ".join((*error.cycle, error.cycle[0]))
    reason = f"in a dependency cycle: {cycle} (a FROM or COPY --from names an image built further down)"
    return [Problem(dockerfiles.get(label, label), reason) for label in error.cycle]


def shown_path(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` when inside it, else as given."""
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)
