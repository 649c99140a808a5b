"""Hashing the targets' inputs on every core, in forked worker processes.

Walking 50,000 context entries is one lstat per entry plus Python work per entry; threads gain
nothing (the GIL serialises the Python part), processes do. The workers are forked from the
process that already holds the loaded graph, so nothing is pickled on the way in; each opens its
own connection to the cache (an SQLite connection must not cross a fork) and sends back only the
small per-target manifests. Forking is used only when no other thread runs in the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence

from orchestrator.core.label import Label
from orchestrator.keys.inputs import Manifest
from orchestrator.keys.keys import KeyComputer

MIN_TARGETS = 64  # below this, starting workers costs more than it saves

_computer: KeyComputer | None = None  # the parent's, inherited by the forked workers


def _init_worker() -> None:
    assert _computer is not None
    _computer.stat_cache.reopen()


def _inputs_of(labels: Sequence[Label]) -> tuple[list[tuple[Label, Manifest]], dict[str, Manifest]]:
    assert _computer is not None
    _computer.new_inputs.clear()
    found = [(label, _computer.target_inputs(label)) for label in labels]
    return found, dict(_computer.new_inputs)


def usable(count: int) -> bool:
    cores = os.cpu_count() or 1
    return (
        cores > 1
        and count >= MIN_TARGETS
        and threading.active_count() == 1
        and "fork" in multiprocessing.get_all_start_methods()
    )


def prefetch_inputs(computer: KeyComputer, labels: Sequence[Label]) -> None:
    """Fill ``computer``'s input manifests for ``labels`` using one worker per core."""
    global _computer
    cores = os.cpu_count() or 1
    chunks = [list(labels[i::cores]) for i in range(cores)]
    _computer = computer
    try:
        with multiprocessing.get_context("fork").Pool(cores, initializer=_init_worker) as pool:
            for found, new_inputs in pool.map(_inputs_of, chunks):
                computer.adopt_inputs(found, new_inputs)
    finally:
        _computer = None
