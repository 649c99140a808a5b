"""Step containers a killed build left on the engine: journalled while a build runs, removed after.

The classic builder runs each ``RUN`` step in a container and announces it in the build stream
(`` ---> Running in 3f2a0b1c4d5e``). The engine removes it when the step ends, fails, or the client
disconnects (``rm``/``forcerm``); but when dockerd itself dies mid-step (``kill -9``, a crash) the
container is still there after the restart, stopped, and nothing of the engine's will remove it.

So a build journals the containers it sees, in one file per build under the journal directory
(``<cache dir>/build-containers/<pid>-<hex>.build``)::

    {"pid": 4242, "started": "93101", "host": "ci-7", "engine": "unix:///var/run/docker.sock"}
    3f2a0b1c4d5e
    9c0d41e2aa17

made at the first container and deleted when the build ends normally. An entry still there belongs
to a running build or to one that did not end normally. ``sweep`` (the executor's first build)
takes only the entries of builds that are over: this host and engine, and a process that is gone
(no such pid, or a pid reused: another start time) or is this one but no longer running that build.
It removes exactly the containers they name (the caller checks each full ID starts with the one
journalled) and then the entry; an entry whose containers could not be removed (the engine did
not answer) stays for the next sweep. Two invocations may sweep at once: both steps are idempotent.

The journal is a safety net: failing to write it (a read-only cache) never fails a build.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".build"
_RUNNING_IN = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})\s*$", re.MULTILINE)
_CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")

_active: set[Path] = set()  # this process's entries of builds still running
_active_lock = threading.Lock()


@dataclass(frozen=True, slots=True, kw_only=True)
class Leftover:
    """A container of a build that is over, as its journal entry names it."""

    container_id: str  # as the build stream announced it: usually the 12-character short ID
    pid: int  # the process that ran the build


class Entry:
    """One build's journal entry; the file is made when the first container is noted."""

    def __init__(self, path: Path | None, header: str) -> None:
        self._path = path
        self._header = header
        self._lock = threading.Lock()
        self.container_ids: list[str] = []

    def note(self, output: str) -> None:
        """Journal the step containers ``output`` (a piece of the build stream) announces."""
        for container_id in _RUNNING_IN.findall(output):
            self.add(container_id)

    def add(self, container_id: str) -> None:
        with self._lock:
            self.container_ids.append(container_id)
            if self._path is None:
                return
            text = container_id + "\n"
            with suppress(OSError):
                if len(self.container_ids) == 1:
                    self._path.parent.mkdir(parents=True, exist_ok=True)
                    text = self._header + "\n" + text  # one write: the header never goes without its ID
                with self._path.open("a", encoding="utf-8") as handle:
                    handle.write(text)

    def discard(self) -> None:
        with self._lock:
            if self._path is not None:
                with suppress(OSError):
                    self._path.unlink(missing_ok=True)


class BuildJournal:
    """The journal of the builds on one engine; ``directory=None`` keeps nothing (and sweeps nothing)."""

    def __init__(self, directory: Path | None, engine_url: str) -> None:
        self.directory = directory
        self.engine_url = engine_url

    @contextmanager
    def entry(self) -> Iterator[Entry]:
        """The entry of one build: deleted when the block ends normally, kept when it raises."""
        path = None if self.directory is None else self.directory / f"{os.getpid()}-{uuid.uuid4().hex}{SUFFIX}"
        header = json.dumps(
            {"pid": os.getpid(), "started": _process_start(os.getpid()), "host": _host(), "engine": self.engine_url}
        )
        entry = Entry(path, header)
        if path is not None:
            with _active_lock:
                _active.add(path)
        try:
            yield entry
            entry.discard()
        finally:
            if path is not None:
                with _active_lock:
                    _active.discard(path)

    def sweep(self, remove: Callable[[str], bool]) -> list[Leftover]:
        """Remove the containers of builds that are over (``remove(id)``: True once it is gone).

        Returns those removed or found gone; entries of running builds, other hosts or other
        engines are left alone.
        """
        if self.directory is None:
            return []
        done: list[Leftover] = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            found = self._read_finished(path)
            if found is None:
                continue
            pid, container_ids = found
            gone = [container_id for container_id in container_ids if remove(container_id)]
            done.extend(Leftover(container_id=container_id, pid=pid) for container_id in gone)
            if len(gone) == len(container_ids):
                with suppress(OSError):
                    path.unlink(missing_ok=True)
        return done

    def _read_finished(self, path: Path) -> tuple[int, list[str]] | None:
        """The pid and containers of a finished build's entry for this engine; None for any other."""
        with _active_lock:
            if path in _active:
                return None
        try:
            header, *lines = path.read_text(encoding="utf-8").splitlines()
            fields = json.loads(header)
            pid, started, host, engine = (fields["pid"], fields["started"], fields["host"], fields["engine"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # gone meanwhile, or not an entry: never guess whose containers it names
        if host != _host() or engine != self.engine_url:
            return None
        if pid != os.getpid() and started is not None and _process_start(pid) == started:
            return None  # that build's process still runs
        # A torn last line (the process died mid-write) is shorter than an ID, or not hex: skipped.
        return pid, [line for line in lines if _CONTAINER_ID.match(line)]


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell a reused pid; None if
    there is no such process. Without /proc: "" for any living process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""  # it exists, as somebody else's
        return ""
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22, counted after the command name's ")"


def _host() -> str:
    return socket.gethostname()
