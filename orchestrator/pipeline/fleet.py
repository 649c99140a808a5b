"""The engines one run builds on, as the run goes: their free slots, what each holds, which went down.

A ``Member`` is one connected engine with its records (``Records.on(url)``: an image ID means
nothing on another engine) and its capacity (its ``jobs``). Worker threads ``acquire`` a member for a
ready node (the rule is ``placement.choose``), ``release`` it when the node's work ends, and ask
``went_down`` after a failure: an engine that answers no ping is marked down for the rest of the run,
so its node can be retried once on another. With one engine the fleet is that engine, always chosen.

Before a run: ``member_of`` makes a member of a connected engine, ``check_several`` refuses several
engines without a registry cache to write to, ``check_runnable`` checks that every platform can run
on some engine (natively, or under this machine's QEMU).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.cache.records import Records
from orchestrator.core.engines import LOCAL_SOCKET, SEVERAL_ENGINES_NEED_A_REGISTRY, EngineSpec, records_namespace
from orchestrator.core.model import Node
from orchestrator.engine.api import Executor, ImageSummary
from orchestrator.engine.emulation import check_emulation, emulator_problem
from orchestrator.engine.local import Engines
from orchestrator.errors import EXIT_BUILD_FAILED, OrchestratorError, UsageError
from orchestrator.pipeline.options import BuildOptions
from orchestrator.pipeline.placement import Slots, able, choose
from orchestrator.registry.cache import RemoteCache

PING_TIMEOUT_S = 5.0  # how long a failed node's engine has to answer before it counts as down


class EngineLost(OrchestratorError):
    """No engine left that can build a node: each that could went down during the run (exit 1)."""

    exit_code = EXIT_BUILD_FAILED


@dataclass(slots=True, kw_only=True, eq=False)
class Member:
    """One engine of the run; ``running`` and ``down`` change under the fleet's lock."""

    url: str
    executor: Executor
    jobs: int
    native: frozenset[str]  # declared platforms, else the engine's own
    emulates: frozenset[str] | None  # what it runs under emulation (None: any, as far as is known)
    records: Records
    images: Mapping[str, ImageSummary] = field(default_factory=dict)  # one listing, taken at connection
    tls: str | None = None  # its TLS directory (ca.pem, cert.pem, key.pem), when its entry names one
    running: int = 0
    down: str | None = None  # why it is left alone for the rest of the run

    def slots(self) -> Slots:
        return Slots(url=self.url, jobs=self.jobs, running=self.running, native=self.native, emulates=self.emulates)


class Fleet:
    """The run's engines, the home engine first (where human tags and ``--load`` land)."""

    def __init__(self, members: Sequence[Member], *, on_down: Callable[[Member], None] = lambda member: None) -> None:
        if not members:
            raise ValueError("a fleet needs at least one engine")
        self.members = tuple(members)
        self._by_url = {m.url: m for m in self.members}
        self._on_down = on_down
        self._changed = threading.Condition()

    @property
    def home(self) -> Member:
        return self.members[0]

    @property
    def several(self) -> bool:
        return len(self.members) > 1

    def member(self, url: str) -> Member:
        return self._by_url[url]

    def holding(self, url: str | None) -> Member:
        """The engine at ``url`` (where a report says a node's image is), else the home engine."""
        return self._by_url.get(url or "", self.home)

    def last_duration(self, node: Node) -> float | None:
        """How long ``node``'s last key took to build, on whichever engine recorded it (None: unknown)."""
        last = self.home.records.last_key(node)  # one for all engines
        found = (m.records.get(last) for m in self.members) if last else iter(())
        record = next((r for r in found if r is not None), None)
        return None if record is None else record.duration_s

    def live(self) -> list[Member]:
        with self._changed:
            return [m for m in self.members if m.down is None]

    @property
    def capacity(self) -> int:
        """The builds the live engines take at once."""
        return sum(m.jobs for m in self.live()) or 1

    def acquire(
        self,
        platform: str,
        holding: Mapping[str, int],
        cancel: threading.Event,
        *,
        avoid: frozenset[str] = frozenset(),
    ) -> Member:
        """A slot on the engine the placement rule picks for a node of ``platform``, waiting for one to free.

        ``holding``: how many of the node's parents each engine holds; ``avoid``: engines already
        tried. Raises EngineLost when no live engine outside ``avoid`` can build ``platform``.
        """
        with self._changed:
            while True:
                if cancel.is_set():
                    raise OrchestratorError("cancelled before an engine was free")
                live = [m for m in self.members if m.down is None and m.url not in avoid]
                state = [m.slots() for m in live]
                if not able(platform, state):
                    raise EngineLost(self._lost(platform, avoid))
                url = choose(platform, state, holding)
                if url is not None:
                    member = self._by_url[url]
                    member.running += 1
                    return member
                self._changed.wait(0.5)  # a release or an engine going down wakes it sooner

    def release(self, member: Member) -> None:
        with self._changed:
            member.running -= 1
            self._changed.notify_all()

    def went_down(self, member: Member) -> str | None:
        """Why ``member`` is down, asking it when not known yet (a ping within PING_TIMEOUT_S); None: it answers."""
        with self._changed:
            if member.down is not None:
                return member.down
        try:
            member.executor.ping(timeout=PING_TIMEOUT_S)
        except OrchestratorError as exc:
            self.mark_down(member, str(exc))
            return member.down
        return None

    def mark_down(self, member: Member, why: str) -> None:
        """Leave ``member`` alone for the rest of the run (said once)."""
        with self._changed:
            if member.down is not None:
                return
            member.down = why
            self._changed.notify_all()
        self._on_down(member)

    def _lost(self, platform: str, avoid: frozenset[str]) -> str:
        down = [f"{m.url} ({m.down})" for m in self.members if m.down is not None]
        tried = [url for url in avoid if self._by_url[url].down is None]
        parts = [f"no engine left to build {platform}"]
        if down:
            parts.append(f"down: {'; '.join(down)}")
        if tried:
            parts.append(f"already tried: {', '.join(sorted(tried))}")
        return ": ".join(parts[:1]) + (" — " + "; ".join(parts[1:]) if len(parts) > 1 else "")


def member_of(
    executor: Executor,
    images: Mapping[str, ImageSummary] | None,
    spec: EngineSpec | None,
    records: Records,
    options: BuildOptions,
    *,
    default_jobs: int,
) -> Member:
    """One engine of a run; its slots: --jobs, else its entry's jobs, else ``default_jobs``; its records
    those of its URL (``core/engines.py: records_namespace``)."""
    url = getattr(executor, "url", None)
    url = url if isinstance(url, str) else LOCAL_SOCKET
    native = spec.platforms if spec is not None and spec.platforms else (executor.native_platform(),)
    return Member(
        url=url,
        executor=executor,
        jobs=options.jobs_given or (spec.jobs if spec is not None else None) or default_jobs,
        native=frozenset(native),
        emulates=None,
        records=records.on(records_namespace(url)),
        images=images or {},
        tls=spec.tls if spec is not None else None,
    )


def check_several(engines: Engines, remote: RemoteCache | None) -> None:
    """UsageError when several engines are asked for without a registry cache they can write to."""
    if engines.count > 1 and (remote is None or not remote.write):
        why = "no registry cache is set" if remote is None else "--no-remote-cache-write forbids writing to it"
        raise UsageError(f"{engines.count} engines asked for, but {why}: {SEVERAL_ENGINES_NEED_A_REGISTRY}")


def check_runnable(fleet: Fleet, platforms: Iterable[str]) -> None:
    """Every platform to build or run can run on some engine: natively, or under an emulator of this
    machine (an engine elsewhere is assumed to emulate what it does not run natively). Notes on each
    engine on this machine what it emulates, for placement."""
    wanted = set(platforms)
    for member in fleet.live():
        if member.executor.is_local():
            native = member.executor.native_platform()
            member.emulates = frozenset(p for p in wanted - member.native if emulator_problem(p, native) is None)
    for platform in sorted(wanted):
        if not able(platform, [m.slots() for m in fleet.live()]):
            home = fleet.home
            check_emulation([platform], home.executor.native_platform())  # raises, saying what to install
