"""What ``build`` and ``test`` share in the CLI: the pipeline run on the console, notices, SIGTERM.

Imported only when one of those commands runs (it pulls in the build machinery).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from orchestrator.cache.store import Store
from orchestrator.engine.local import Engine, Engines
from orchestrator.pipeline import run as pipeline
from orchestrator.pipeline.options import Terminated
from orchestrator.registry.cache import Level, Notice, RemoteCache
from orchestrator.report.console import ConsoleDisplay
from orchestrator.workspace.loading import LoadedWorkspace


def run_on_console(
    console: Console,
    *,
    loaded: LoadedWorkspace,
    store: Store,
    cache_dir: Path,
    request: pipeline.Request,
    engine: Callable[[], Engine | Engines],
    remote: RemoteCache | None,
) -> pipeline.Result:
    """``pipeline.run`` with the live display and the notices on ``console``; the registry closed after."""
    display = ConsoleDisplay(console)
    try:
        return pipeline.run(
            loaded=loaded,
            store=store,
            cache_dir=cache_dir,
            request=request,
            engine=engine,
            listener=display,
            remote=remote,
            warn=lambda notice: print_notice(console, notice),
        )
    finally:
        display.stop()
        if remote is not None:
            remote.close()


def print_notice(console: Console, notice: Notice) -> None:
    """``WARNING <message>`` or ``ERROR <message>`` on the console (stderr)."""
    style = "bold red" if notice.level is Level.ERROR else "yellow"
    # soft_wrap: one line however long, so that a CI log can be searched for it
    console.print(f"[{style}]{notice.level}[/] {escape(notice.message)}", highlight=False, soft_wrap=True)


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
