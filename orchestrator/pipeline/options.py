"""What a build was asked to do, beyond its selection."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    jobs_given: int | None = None  # --jobs: with several engines, each one's slots (else its jobs, else the cores)
    keep_going: bool = True
    no_cache: bool = False  # build the selected nodes again, without the engine's layer cache
    engine_timeout_s: float | None = None  # a build fails when its engine answers nothing for this long
    platforms: tuple[str, ...] = ()  # only these platforms' nodes of the selection (default: all)
    load: bool = False  # pull the selection's registry hits too, so the engine has every image
    push: bool = False  # put the selection's human tags in the registry
    executor: str | None = None  # auto | buildkit | classic (--executor); None: WORKSPACE's executor
    rescan: bool = False  # scan again, ignoring cached passes, cached and pulled nodes too (pipeline/scan.py)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it stops a build as cleanly as Ctrl-C (exit 143)."""
