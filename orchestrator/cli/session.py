"""What ``build`` and ``test`` share in the CLI: SIGTERM stops a build as Ctrl-C does."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.pipeline.options import Terminated


@contextmanager
def sigterm_stops_cleanly() -> Iterator[None]:
    """SIGTERM (a cancelled CI job) stops running builds like Ctrl-C does: no record, no tag."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
