"""Evaluating WORKSPACE and BUILD files in a forked child, under a time and a memory budget.

starlark-pyo3 evaluates in Rust holding the GIL, so no Python signal handler (Ctrl-C, a timer) runs
until an evaluation returns, and its ``check_cancelled`` hook runs between bytecode instructions, never
inside one ``s + s``: in this process a runaway file (nested ``range(2147483647)`` loops, a string
doubled 64 times) can be neither stopped nor bounded. So the evaluation runs in a child process:

- the parent forks, then waits on a pipe for the pickled result, interruptibly; Ctrl-C, SIGTERM or a
  file over its time budget kills the child at once (SIGKILL) and becomes one error naming the file;
- the child caps its address space at what it had at the fork plus the memory budget (RLIMIT_AS), and
  its CPU time at the time budget of the file it is on (RLIMIT_CPU: a backstop should the parent die
  without killing it); its stderr goes to /dev/null (Rust's panic message on running out of memory);
- before each top-level file the child writes the start time and the files being evaluated (the
  BUILD file, then the .star files it is loading, innermost last) into a page shared with the parent,
  which so knows the deadline and the file to name without a message per file.

A fork, the evaluation's first use of memory the parent had touched, and the exit cost 3-4 ms in
the CLI: paid when BUILD files are evaluated (the load cache missed), and for a WORKSPACE file that
computes anything (the loader evaluates one of only literals in process).

What the child's outcome becomes in the parent:

    the work returned                    its value (pickled)
    the work raised OrchestratorError    the same error (pickled)
    the file ran past its time budget    BuildFileError "<file>: evaluation took longer than N s"
    out of memory (MemoryError, abort)   BuildFileError "<file>: evaluation needed more than N MiB"
    Ctrl-C / SIGTERM in the parent       LoadInterrupted (exit 130 / 143)
    anything else                        RuntimeError holding the child's traceback (a bug)
"""

from __future__ import annotations

import faulthandler
import mmap
import os
import pickle
import resource
import select
import signal
import struct
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from orchestrator.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    BuildFileError,
    LoadInterrupted,
    Location,
    OrchestratorError,
)

T = TypeVar("T")

_MiB = 1 << 20
_PAGE = struct.Struct("<qqI")  # sequence number (odd while written), start of the current file (ns), text length
_TEXT_MAX = mmap.PAGESIZE - _PAGE.size
_EXIT_OUT_OF_MEMORY = 3  # the child's exit status when MemoryError left it unable to report


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """What one evaluation may take: wall-clock seconds per top-level file, memory for the whole child."""

    timeout_s: float = 60.0
    memory_mb: int = 2048
    settable: bool = True  # False for WORKSPACE itself, evaluated under the defaults

    def hint(self, doubt: str, attr: str, unit: str) -> str:
        if self.settable:
            return f"{doubt}? If not, raise the limit: workspace({attr} = {unit})"
        return f"{doubt}? (WORKSPACE itself is evaluated under the default limits)"


DEFAULT_BUDGET = Budget()


class Progress(Protocol):
    """Told by the loader which file it starts and finishes evaluating (nested for loads)."""

    def enter(self, path: str) -> None: ...

    def leave(self) -> None: ...


class NoProgress:
    def enter(self, path: str) -> None:
        pass

    def leave(self) -> None:
        pass


class _Tracker:
    """The child's side of the shared page: publishes the files being evaluated."""

    def __init__(self, page: mmap.mmap, timeout_s: float) -> None:
        self.page = page
        self.timeout_s = timeout_s
        self.stack: list[str] = []
        self.sequence = 0
        self.started = time.monotonic_ns()
        self._publish()

    def enter(self, path: str) -> None:
        if not self.stack:
            self.started = time.monotonic_ns()
            _limit_cpu(self.timeout_s)
        self.stack.append(path)
        self._publish()

    def leave(self) -> None:
        self.stack.pop()
        self._publish()

    def _publish(self) -> None:
        text = "\n".join(self.stack).encode()[:_TEXT_MAX]
        self.sequence += 1
        _PAGE.pack_into(self.page, 0, self.sequence * 2 - 1, self.started, len(text))  # odd: being written
        self.page[_PAGE.size : _PAGE.size + len(text)] = text
        _PAGE.pack_into(self.page, 0, self.sequence * 2, self.started, len(text))


def _read_page(page: mmap.mmap) -> tuple[int, list[str]]:
    """(start of the current file in monotonic ns, the files being evaluated, outermost first)."""
    for _ in range(100):
        before, started, length = _PAGE.unpack_from(page, 0)
        text = page[_PAGE.size : _PAGE.size + length]
        if before % 2 == 0 and _PAGE.unpack_from(page, 0)[0] == before:
            return started, text.decode(errors="replace").split("\n") if text else []
    return started, []  # the child died while writing; the start time alone still holds


def run(work: Callable[[Progress], T], budget: Budget) -> T:
    """``work(progress)`` in a forked child under ``budget``; its result or its error, here."""
    if not hasattr(os, "fork"):
        return work(NoProgress())
    page = mmap.mmap(-1, mmap.PAGESIZE)  # anonymous and shared with the child
    _PAGE.pack_into(page, 0, 0, time.monotonic_ns(), 0)  # the deadline runs from now until the child writes
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns when a process with threads forks; the child runs only the loader's own
        # code and exits with os._exit, and the interpreter re-creates its import lock in the child.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its coverage is never written
        os.close(read_end)
        _child(work, budget, page, write_end)
    os.close(write_end)
    try:
        with _sigterm_raises():
            data = _collect(read_end, page, budget)
        _, status = os.waitpid(pid, 0)
    except BaseException as stop:
        _kill(pid)
        if isinstance(stop, KeyboardInterrupt | _Terminated):
            terminated = isinstance(stop, _Terminated)
            where = _files(_read_page(page)[1])
            raise LoadInterrupted(
                f"{'terminated' if terminated else 'interrupted'} while evaluating {where}",
                exit_code=EXIT_TERMINATED if terminated else EXIT_INTERRUPTED,
            ) from None
        raise
    finally:
        os.close(read_end)
    return cast(T, _outcome(data, os.waitstatus_to_exitcode(status), page, budget))


def _child(work: Callable[[Progress], Any], budget: Budget, page: mmap.mmap, write_end: int) -> None:
    """Run ``work`` and write ``(kind, value)`` pickled to ``write_end``; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C reaches us too: the parent decides
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        faulthandler.disable()  # it may write to a copy of stderr; a crash here is reported by the parent
        _limit_memory(budget.memory_mb)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            reply: tuple[str, Any] = ("ok", work(_Tracker(page, budget.timeout_s)))
        except MemoryError:
            reply = ("memory", None)
        except OrchestratorError as error:
            reply = ("error", error) if _pickles(error) else ("error", BuildFileError(str(error)))
        except BaseException:  # a bug: the parent shows the traceback
            reply = ("crash", traceback.format_exc())
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view) :]
        code = 0
    except MemoryError:
        code = _EXIT_OUT_OF_MEMORY
    finally:
        os._exit(code)


def _pickles(error: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return False
    return True


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what the child has now plus ``memory_mb`` (Linux: /proc/self/statm)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            size = int(statm.read().split()[0]) * mmap.PAGESIZE
    except OSError:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = size + memory_mb * _MiB
    resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _limit_cpu(timeout_s: float) -> None:
    """SIGXCPU once this file has used ``timeout_s`` seconds of CPU beyond what the child used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(usage.ru_utime + usage.ru_stime + timeout_s) + 2  # after the parent's deadline
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _collect(read_end: int, page: mmap.mmap, budget: Budget) -> bytes:
    """Everything the child writes, until it closes the pipe; raises when a file is over time."""
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    chunks: list[bytes] = []
    timeout_ns = int(budget.timeout_s * 1e9)
    while True:
        started, files = _read_page(page)
        remaining_ns = started + timeout_ns - time.monotonic_ns()
        if poller.poll(max(0, remaining_ns // 1_000_000 + 1)):  # Ctrl-C interrupts the wait here
            chunk = os.read(read_end, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
        elif _read_page(page)[0] == started:  # no new file started since: this one is over time
            raise _budget_error(
                files,
                f"evaluation took longer than {budget.timeout_s:g} s",
                budget.hint("a loop that does not end", "eval_timeout", "SECONDS"),
            )


def _outcome(data: bytes, exit_code: int, page: mmap.mmap, budget: Budget) -> Any:
    files = _read_page(page)[1]
    memory = _budget_error(
        files,
        f"evaluation needed more than {budget.memory_mb} MiB of memory",
        budget.hint("a value that grows without end", "eval_memory_mb", "MIB"),
    )
    if exit_code == 0 and data:
        kind, value = pickle.loads(data)
        if kind == "ok":
            return value
        if kind == "error":
            raise value
        if kind == "memory":
            raise memory
        raise RuntimeError(f"evaluating {_files(files)} failed in the child process:\n{value}")
    if exit_code == -signal.SIGXCPU:
        raise _budget_error(
            files,
            f"evaluation took longer than {budget.timeout_s:g} s of CPU time",
            budget.hint("a loop that does not end", "eval_timeout", "SECONDS"),
        )
    if exit_code in (_EXIT_OUT_OF_MEMORY, -signal.SIGABRT, -signal.SIGKILL):
        raise memory  # a failed allocation aborts; the kernel's OOM killer sends SIGKILL
    how = f"signal {signal.Signals(-exit_code).name}" if exit_code < 0 else f"exit status {exit_code}"
    raise BuildFileError(
        f"the process evaluating {_files(files)} ended unexpectedly ({how})",
        location=Location(files[-1]) if files else None,
    )


def _budget_error(files: list[str], what: str, hint: str) -> BuildFileError:
    """The error, located at the innermost file; the file that loaded it (and the BUILD file) named too."""
    if not files:
        return BuildFileError(f"{what} (evaluating BUILD files); {hint}")
    loaded = ""
    if len(files) > 1:
        loaded = f" (loaded by {files[-2]}" + (f", for {files[0]})" if len(files) > 2 else ")")
    return BuildFileError(f"{what}{loaded}; {hint}", location=Location(files[-1]))


def _files(files: list[str]) -> str:
    return files[-1] if files else "BUILD files"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


class _Terminated(BaseException):
    """SIGTERM while waiting for the child."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While waiting, SIGTERM raises _Terminated (the child is killed, exit 143), unless it is ignored.

    Whatever handled SIGTERM before (the default action, a build's handler) is restored afterwards.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
