"""Every error the user can see, with its exit code.

Expected errors are raised by the library and handled once, at the CLI, which prints
``ERROR <message>`` and exits with ``exit_code``; no traceback.

    OrchestratorError                 (exit 2 unless stated)
    ├── WorkspaceError                no WORKSPACE, bad settings, path escaping the workspace
    ├── BuildFileError                a BUILD / .star file failed to parse or evaluate (file:line:col)
    ├── LoadInterrupted               Ctrl-C (exit 130) or SIGTERM (exit 143) while BUILD files evaluate
    ├── DockerfileError               a Dockerfile that cannot be analysed (file:line)
    ├── GraphError                    duplicates, clashing image references, base= mismatch, platforms
    │   └── CycleError                a dependency cycle (holds the cycle)
    ├── UnknownTargetError            a label or image reference nobody defines (did you mean)
    ├── NothingMatchedError           a pattern that selects nothing (exit 3)
    ├── UsageError                    options that contradict each other or lack a setting
    ├── InputChanged                  an input changed between hashing and sending (exit 1)
    ├── GitError                      ``--since`` could not ask git
    └── CacheError                    the local cache cannot be used (holds its path)
        └── CacheFullError            no space left where the local cache lives
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING_MATCHED = 3
EXIT_TEST_FAILED = 4
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (a CI job cancelled)


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a user's file, printed ``path:line:column``."""

    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = self.path
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


class OrchestratorError(Exception):
    """Root of every expected, user-facing error."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}"


class WorkspaceError(OrchestratorError):
    """The workspace cannot be found or a path in it is invalid."""


class BuildFileError(OrchestratorError):
    """A BUILD or .star file is wrong."""


class LoadInterrupted(OrchestratorError):
    """Ctrl-C or SIGTERM stopped the evaluation of WORKSPACE or BUILD files (names the file)."""

    def __init__(self, message: str, *, exit_code: int = EXIT_INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DockerfileError(OrchestratorError):
    """A Dockerfile cannot be analysed."""


class GraphError(OrchestratorError):
    """The targets do not form a valid image family."""


class CycleError(GraphError):
    """The dependency graph has a cycle; ``cycle`` lists it in order."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        lines = "\n".join(f"    {node}" for node in (*self.cycle, self.cycle[0]))
        super().__init__(
            f"dependency cycle:\n{lines}\n"
            "hint: a FROM or COPY --from in one of these Dockerfiles names an image built further down."
        )


class UnknownTargetError(OrchestratorError):
    """A label or image reference that no target defines."""


class NothingMatchedError(OrchestratorError):
    """A pattern selected no target."""

    exit_code = EXIT_NOTHING_MATCHED


class InputChanged(OrchestratorError):
    """An input of a node changed after its key was computed: what would be sent no longer has that key.

    Nothing is built, tagged or recorded for the node; the next build computes a new key.
    """

    exit_code = EXIT_BUILD_FAILED


class GitError(OrchestratorError):
    """git could not answer (``--since``)."""


def failure_reason(exc: BaseException, *, timeouts: tuple[type[BaseException], ...] = ()) -> str:
    """The operating system's words for a connection failure ("Connection refused"), else the exception's.

    The exception's arguments, causes and a ``reason`` attribute are searched, nearest first (requests
    wraps urllib3's MaxRetryError, whose ``reason`` wraps the socket's error); one of ``timeouts``
    found on the way is "timed out".
    """
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, timeouts):
            return "timed out"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        pending.extend((*current.args, getattr(current, "reason", None), current.__cause__, current.__context__))
    return str(exc)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """A ``did you mean ...?`` suffix, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class UsageError(OrchestratorError):
    """Options that contradict each other, or that need a setting nobody gave (exit 2)."""


class CacheError(OrchestratorError):
    """The local cache cannot be read or written (a damaged one is replaced, not reported here)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[type[CacheError], tuple[str, str]]:
        # positional arguments, so the error survives pickling out of a forked hashing worker
        return type(self), (self.message, self.path)


class CacheFullError(CacheError):
    """No space left on the device of the local cache (SQLITE_FULL, ENOSPC, EDQUOT)."""
