"""What both builders share while a build runs: its log, and the watchdog that notices a silent engine.

``BuildLog`` writes a build's output to the node's log file, keeps its last lines for the error
message, and tells ``progress`` of each step. ``Watchdog`` pings the engine while a build is quiet
and calls ``abandon`` once the engine has answered nothing for the engine timeout; ``frozen_message``
is what the build then fails with. ``when_set`` calls ``stop`` as soon as the build is cancelled.
The classic builder (``docker.py``) and BuildKit (``buildkit.py``) use them alike.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from orchestrator.core.model import Node
from orchestrator.engine.api import BuildFailed, Progress
from orchestrator.engine.connection import EngineConnection
from orchestrator.engine.leftovers import Entry
from orchestrator.errors import OrchestratorError

LOG_TAIL_LINES = 25
PING_INTERVAL_S = 5.0  # how often a quiet build's engine is asked whether it is alive
CANCEL_POLL_S = 0.1  # how soon a cancelled build is stopped


class BuildLog:
    """A build's log file, its last lines for the error message, and who is told of its steps."""

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed in __exit__)
        self._tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._partial = ""  # output not yet ended by a newline
        self.containers = Entry(None, "")  # the build's journal entry (leftovers.py), set by build()
        self.progress: Progress | None = None  # told each step as it starts, set by build()

    def __enter__(self) -> BuildLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def write(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()
        *lines, self._partial = (self._partial + text.replace("\r\n", "\n")).split("\n")
        self._tail.extend(line.rsplit("\r", 1)[-1] for line in lines)  # a progress line shows its last state

    def line(self, text: str) -> None:
        self.write(("\n" if self._partial else "") + text + "\n")

    def tail(self) -> str:
        lines = [*self._tail, self._partial] if self._partial else list(self._tail)
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def failure(self, message: str) -> BuildFailed:
        """Log ``message`` as the error and return the BuildFailed to raise."""
        self.line(f"ERROR: {message}")
        return BuildFailed(message, log_path=self.path, log_tail=self.tail())


class Watchdog:
    """Pings the engine while a build is quiet; ``expired`` once it has not answered for ``timeout``.

    A quiet RUN step is normal, so silence alone proves nothing: only an engine that answers no
    ping (dockerd stopped, hung or gone) ends the build, through ``abandon`` (called once, on the
    watchdog's thread).
    """

    def __init__(self, engine: EngineConnection, timeout: float, abandon: Callable[[], None]) -> None:
        self._engine = engine
        self._timeout = timeout
        self._abandon = abandon
        self._interval = min(PING_INTERVAL_S, max(timeout / 4, 0.2))
        self._last_sign_of_life = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="docker-engine-watchdog", daemon=True)
        self.expired = False

    def heard(self) -> None:
        """The engine sent something."""
        self._last_sign_of_life = time.monotonic()

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(self._interval):
            if time.monotonic() - self._last_sign_of_life < self._interval:
                continue
            with suppress(OrchestratorError):
                self._engine.ping(timeout=self._interval)
                self.heard()
            if time.monotonic() - self._last_sign_of_life >= self._timeout:
                self.expired = True
                self._abandon()
                return


def frozen_message(node: Node, url: str, timeout: float) -> str:
    """Why a build whose engine stopped answering was abandoned."""
    return (
        f"{node}: the Docker Engine at {url} did not answer for {timeout:g} s (engine timeout: "
        "--engine-timeout or workspace(engine_timeout = ...)); the build was abandoned. Is dockerd stopped "
        "or overloaded? The next build starts this node again."
    )


@contextmanager
def when_set(cancel: threading.Event, stop: Callable[[], None], *, name: str) -> Iterator[None]:
    """Call ``stop`` (once) as soon as ``cancel`` is set while the block runs, from a thread of its own."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(CANCEL_POLL_S):
                stop()
                return

    watcher = threading.Thread(target=watch, name=name, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
