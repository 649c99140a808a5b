"""Where a ready node is built when a run has several engines: the placement rule, as pure functions.

A node goes to an engine with a free slot (capacity = the engine's ``jobs``), preferring, in order:

1. one that runs the node's platform natively (an arm64 engine builds arm64 without QEMU), else one
   that emulates it;
2. one that already holds the node's parents (nothing to pull through the registry);
3. the least loaded (running / jobs), then the first declared.

``choose`` applies the rule to the engines' state at one moment (the run's ``Fleet`` calls it as each
node becomes ready); ``simulate`` plays a whole run with expected durations, for ``--dry-run``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

N = TypeVar("N", bound=Hashable)


@dataclass(frozen=True, slots=True, kw_only=True)
class Slots:
    """One engine's state as placement sees it."""

    url: str
    jobs: int
    running: int
    native: frozenset[str]  # the platforms it runs without emulation
    emulates: frozenset[str] | None = None  # the others it can run (None: any, as far as is known)

    @property
    def free(self) -> int:
        return self.jobs - self.running

    def runs(self, platform: str) -> bool:
        return platform in self.native or self.emulates is None or platform in self.emulates


def choose(platform: str, engines: Sequence[Slots], holding_parents: Mapping[str, int]) -> str | None:
    """The URL of the engine to build a node of ``platform`` on now; None when none has a free slot.

    ``holding_parents``: how many of the node's parents each engine (by URL) already holds.
    """
    candidates = [(i, e) for i, e in enumerate(engines) if e.free > 0 and e.runs(platform)]
    if not candidates:
        return None

    def preference(item: tuple[int, Slots]) -> tuple[bool, int, float, int]:
        index, engine = item
        return (platform not in engine.native, -holding_parents.get(engine.url, 0), engine.running / engine.jobs, index)

    return min(candidates, key=preference)[1].url


def able(platform: str, engines: Sequence[Slots]) -> list[str]:
    """The engines that can build ``platform`` at all (free or busy), natively first."""
    native = [e.url for e in engines if platform in e.native]
    return native + [e.url for e in engines if e.url not in native and e.runs(platform)]


def simulate(
    order: Iterable[N],
    parents: Mapping[N, Iterable[N]],
    platform_of: Callable[[N], str],
    duration: Mapping[N, float],
    engines: Sequence[Slots],
    *,
    held: Mapping[N, frozenset[str]] | None = None,
    priority: Mapping[N, float] | None = None,
) -> dict[N, str]:
    """Where each node of ``order`` would be built, playing the run with the expected ``duration`` of each.

    ``parents`` may name nodes outside ``order``: they are done, on the engines ``held`` gives (none
    known: anywhere). Ready nodes start highest ``priority`` first, as the scheduler starts them. A
    platform no engine can build is left out of the answer.
    """
    nodes = list(dict.fromkeys(order))
    members = set(nodes)
    held_by: dict[N, frozenset[str]] = dict(held or {})
    ups = {n: [p for p in dict.fromkeys(parents.get(n, ())) if p in members] for n in nodes}
    waiting = {n: len(ups[n]) for n in nodes}
    children: dict[N, list[N]] = {n: [] for n in nodes}
    for node in nodes:
        for parent in ups[node]:
            children[parent].append(node)
    index = {n: i for i, n in enumerate(nodes)}
    rank = priority or {}
    ready = [n for n in nodes if waiting[n] == 0]
    running = {e.url: 0 for e in engines}
    finishing: list[tuple[float, int, N, str]] = []  # (time, index, node, url)
    placed: dict[N, str] = {}
    now = 0.0
    while ready or finishing:
        ready.sort(key=lambda n: (-rank.get(n, 0.0), str(n), index[n]))
        still: list[N] = []
        for node in ready:
            state = [
                Slots(url=e.url, jobs=e.jobs, running=running[e.url], native=e.native, emulates=e.emulates)
                for e in engines
            ]
            holding = _holding(parents.get(node, ()), held_by)
            url = choose(platform_of(node), state, holding)
            if url is None:
                if not able(platform_of(node), engines):
                    continue  # never buildable here: dropped (the run reports it)
                still.append(node)
                continue
            placed[node] = url
            running[url] += 1
            heapq.heappush(finishing, (now + duration.get(node, 1.0), index[node], node, url))
        ready = still
        if not finishing:
            break
        now, _, done, url = heapq.heappop(finishing)
        running[url] -= 1
        held_by[done] = frozenset({url})
        for child in children[done]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return placed


def _holding(parents: Iterable[N], held: Mapping[N, frozenset[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for parent in parents:
        for url in held.get(parent, frozenset()):
            counts[url] = counts.get(url, 0) + 1
    return counts
