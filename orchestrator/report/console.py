"""What a person sees while building: a live view of running nodes, then a summary.

On a terminal, a rich Live display shows one line per running node (with its current Dockerfile
step) and the counts so far; else (CI logs) one plain line per event, and a heartbeat line for each
node still building, pulling or pushing at least every ``HEARTBEAT_S`` seconds, so that a quiet
step never looks like a hang. Failed nodes get the tail of their log and its path; without a
terminal, escape sequences (colours) in build output are stripped.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from orchestrator.core.model import Node
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.plan import Action, Plan
from orchestrator.pipeline.summary import BuildSummary, NodeReport, NodeStatus

HEARTBEAT_S = 25.0  # promised: a line per running node at least every 30 s; the rest is slack for a busy CI host
TICK_S = 1.0  # how often the heartbeat looks for nodes due a line
STEP_CHARS = 100  # a step shown longer than this is cut
WHY_MIN_WIDTH = 20

# CSI (colours, cursor moves), OSC (titles, links), character set choices and two-character escapes.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[@-Z\\-_])")

STYLE = {
    NodeStatus.BUILT: "green",
    NodeStatus.CACHED: "dim",
    NodeStatus.REMOTE_CACHED: "cyan",
    NodeStatus.PULLED: "cyan",
    NodeStatus.FAILED: "bold red",
    NodeStatus.SKIPPED: "yellow",
    NodeStatus.CANCELLED: "yellow",
}


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return _ANSI.sub("", text)


def build_output(console: Console, text: str, style: str = "") -> Text:
    """Output of a build for ``console``: its colours on a terminal, plain text elsewhere."""
    if console.is_terminal:
        return Text.from_ansi(text, style=style)
    return Text(strip_ansi(text), style=style)


@dataclass(slots=True)
class _Activity:
    """A node being built, pulled or pushed, as the display knows it."""

    verb: str  # "building", "pulling", "pushing"
    began: float
    said: float  # when a line about it was last printed
    step: str = ""  # its last Dockerfile step, for a build
    engine: str = ""  # with several engines: the one it runs on


class ConsoleDisplay:
    """The build's ``Listener`` (pipeline/execute.py): callbacks come from the scheduling thread and,
    for steps and pushes, from worker threads.

    Without a terminal a thread calls ``beat`` every ``tick_s``; tests pass ``tick_s=None`` and a
    ``clock``, and call ``beat`` themselves.
    """

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_s: float = HEARTBEAT_S,
        tick_s: float | None = TICK_S,
    ) -> None:
        self.console = console
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.tick_s = tick_s
        self.started_at = clock()
        self.running: dict[Node, _Activity] = {}  # builds and pulls
        self.pushing: dict[Node, _Activity] = {}
        self.counts = {"built": 0, "pulled": 0, "failed": 0, "skipped": 0, "cancelled": 0, "cached": 0}
        self.pulls: set[Node] = set()
        self.total = 0
        self.live: Live | None = None
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._stopped = threading.Event()

    # -- pipeline.execute.Listener --------------------------------------------------------------
    def planned(self, plan: Plan) -> None:
        self.total = len(plan.nodes)
        self.counts["cached"] = plan.count(Action.CACHED) + plan.count(Action.REMOTE) - len(plan.to_pull)
        self.pulls = {p.node for p in plan.to_pull}
        to_build = len(plan.to_build)
        remote = plan.count(Action.REMOTE)
        in_registry = f", {remote} in the registry cache ({len(plan.to_pull)} to pull)" if remote else ""
        self.console.print(
            f"{self.total} nodes: {plan.count(Action.CACHED)} cached, {to_build} to build{in_registry}",
            highlight=False,
        )
        if (to_build or self.pulls) and self.console.is_terminal:
            # get_renderable: the view is re-rendered on every refresh, so elapsed times tick.
            self.live = Live(console=self.console, refresh_per_second=4, transient=True, get_renderable=self.view)
            self.live.start()

    def started(self, node: Node) -> None:
        now = self.clock()
        with self._lock:
            self.running[node] = _Activity(verb="pulling" if node in self.pulls else "building", began=now, said=now)
        self._say(Text.assemble(("START", "blue"), f" {node}"), live_too=False)
        self._begin_heartbeat()
        self._refresh()

    def step(self, node: Node, step: str) -> None:
        with self._lock:
            activity = self.running.get(node)
            if activity is not None:
                activity.step = step
        self._refresh()

    def placed(self, node: Node, engine: str) -> None:
        with self._lock:
            activity = self.running.get(node)
            if activity is not None:
                activity.engine = engine
        self._say(f"ON      {node} {engine}", live_too=False)
        self._refresh()

    def finished(self, outcome: scheduler.Outcome[Node]) -> None:
        with self._lock:
            activity = self.running.pop(outcome.node, None)
            word = {
                scheduler.Status.SUCCEEDED: "pulled" if outcome.node in self.pulls else "built",
                scheduler.Status.FAILED: "failed",
                scheduler.Status.SKIPPED: "skipped",
                scheduler.Status.CANCELLED: "cancelled",
            }[outcome.status]
            self.counts[word] += 1
        took = f" ({self.clock() - activity.began:.1f}s)" if activity is not None else ""
        where = f" on {activity.engine}" if activity is not None and activity.engine else ""
        self._say(f"{word.upper():7} {outcome.node}{took}{where}")
        self._refresh()

    def push_started(self, node: Node) -> None:
        now = self.clock()
        with self._lock:
            self.pushing[node] = _Activity(verb="pushing", began=now, said=now)
        self._say(f"PUSH    {node} to the registry cache")
        self._begin_heartbeat()
        self._refresh()

    def push_finished(self, node: Node, *, pushed: bool) -> None:
        with self._lock:
            activity = self.pushing.pop(node, None)
        took = f" ({self.clock() - activity.began:.1f}s)" if activity is not None else ""
        self._say(f"PUSHED  {node}{took}" if pushed else f"PUSH FAILED {node}{took}")
        self._refresh()

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.join()
        if self.live is not None:
            self.live.stop()
            self.live = None

    # -- the heartbeat (no terminal) -----------------------------------------------------------
    def beat(self) -> None:
        """Print a line for each build, pull and push nothing was printed of for ``heartbeat_s``."""
        now = self.clock()
        with self._lock:
            activities = sorted(self.running.items()) + sorted(self.pushing.items())
            due = [(node, a) for node, a in activities if now - a.said >= self.heartbeat_s]
            for _, activity in due:
                activity.said = now
        for node, activity in due:
            step = f" {_short(activity.step)}" if activity.step else ""
            self._say(f"{activity.verb.upper()} {node} ({now - activity.began:.0f}s){step}")

    def _begin_heartbeat(self) -> None:
        """Start the heartbeat thread, once (builds start on one thread, pushes on others)."""
        if self.console.is_terminal or self.tick_s is None:
            return  # a terminal has the live view instead
        with self._lock:
            if self._heartbeat is None and not self._stopped.is_set():
                self._heartbeat = threading.Thread(target=self._beat_until_stopped, name="heartbeat", daemon=True)
                self._heartbeat.start()

    def _beat_until_stopped(self) -> None:
        assert self.tick_s is not None
        while not self._stopped.wait(self.tick_s):
            self.beat()

    # -- rendering -----------------------------------------------------------------------------
    def _say(self, line: str | Text, *, live_too: bool = True) -> None:
        """One event line: above the live view, or alone without one (``live_too=False``: only then)."""
        text = Text(line) if isinstance(line, str) else line  # Text: a label is never read as markup
        # soft_wrap: one event, one line of the log, however narrow the console says it is
        if self.live is not None:
            if live_too:
                self.live.console.print(text, highlight=False, soft_wrap=True)
        else:
            self.console.print(text, highlight=False, soft_wrap=True)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def view(self) -> Group:
        """The live view: a line per build, pull and push running (a build's with its step), then the counts."""
        now = self.clock()
        with self._lock:
            activities = sorted(self.running.items()) + sorted(self.pushing.items())
            shown = [(node, a.verb, a.began, a.step, f" @{a.engine}" if a.engine else "") for node, a in activities]
        lines = [
            Text(f"  {verb} {node}{at} ({now - began:.0f}s) {_short(step)}".rstrip(), no_wrap=True, overflow="ellipsis")
            for node, verb, began, step, at in shown
        ]
        c = self.counts
        cancelled = f"  cancelled {c['cancelled']}" if c["cancelled"] else ""
        status = Text(
            f"built {c['built']}  pulled {c['pulled']}  cached {c['cached']}  failed {c['failed']}"
            f"  skipped {c['skipped']}{cancelled}  of {self.total}  elapsed {now - self.started_at:.0f}s"
        )
        return Group(*lines, status)


def _short(step: str) -> str:
    """A step on one line, plain, cut at STEP_CHARS."""
    text = " ".join(strip_ansi(step).split())
    return text if len(text) <= STEP_CHARS else text[: STEP_CHARS - 3] + "..."


def print_summary(console: Console, summary: BuildSummary, *, verbose: int = 0) -> None:
    """The table of nodes not simply cached, failures, counts, moved tags, warnings; with ``verbose``,
    which builder built and how."""
    interesting = [r for r in summary.reports if r.status is not NodeStatus.CACHED]
    if interesting:
        _print_table(console, interesting)
    for r in summary.reports:
        if r.status is NodeStatus.FAILED:
            # The executor's messages name the node already: say it once.
            error = (r.error or "").removeprefix(f"{r.node}: ")
            # soft_wrap: the error stays one line in a CI log, whatever the console's width (grep finds it)
            line = Text.assemble(("FAILED", "bold red"), f" {r.node}: ", build_output(console, error))
            console.print(line, soft_wrap=True)
            if r.log_tail:
                console.print(build_output(console, r.log_tail.rstrip(), style="dim"))
            if r.log:
                console.print(f"full log: {r.log}", highlight=False, markup=False)
    counts = ", ".join(
        f"{summary.count(s)} {s}" for s in NodeStatus if summary.count(s) or s in (NodeStatus.BUILT, NodeStatus.CACHED)
    )
    console.print(f"{counts}; exit {summary.exit_code}", highlight=False)
    if verbose:
        console.print(executor_line(summary), highlight=False, markup=False, soft_wrap=True)
    for ref in summary.promoted:
        console.print(f"tagged {ref}", highlight=False)  # only references that moved
    for warning in summary.warnings:
        console.print(Text.assemble(("WARNING", "yellow"), f" {warning}"), highlight=False)
    if summary.published is not None:
        for ref in summary.published.pushed:
            console.print(f"pushed {ref}", highlight=False)
        if summary.published.unchanged:
            console.print(
                f"{len(summary.published.unchanged)} tags already up to date in the registry", highlight=False
            )
        for error in summary.published.errors:
            console.print(Text.assemble(("PUSH FAILED", "bold red"), f" {error}"), highlight=False)


def executor_line(summary: BuildSummary) -> str:
    """``builder: buildkit (docker buildx build --load; asked auto)``, or why there was none."""
    use = summary.executor
    if use.used is None:
        return f"builder: none (nothing to build; asked {use.requested}, not probed)"
    return f"builder: {use.used} ({use.detail}; asked {use.requested})"


def _print_table(console: Console, reports: list[NodeReport]) -> None:
    """The nodes that were not simply cached, one row each; labels and platforms are never split.

    A console too narrow for the table gets one line per node instead.
    """
    several = len({r.engine for r in reports if r.engine}) > 1  # built on several engines: say where
    table = Table(title="build summary", show_lines=False)
    for column in ("target", "platform", "status", "time"):
        table.add_column(column, no_wrap=True)
    if several:
        table.add_column("engine", overflow="fold")
    table.add_column("why", overflow="fold", min_width=WHY_MIN_WIDTH)
    rows = [
        (
            str(r.node.label),
            r.node.platform,
            str(r.status),
            f"{r.duration_s:.1f}s" if r.duration_s else "",
            f"{r.reason} (on {r.engine})" if several and r.engine else r.reason,
        )
        for r in reports
    ]
    for (label, platform, status, took, _why), r in zip(rows, reports, strict=True):
        where = [r.engine or ""] if several else []
        table.add_row(label, platform, Text(status, style=STYLE[r.status]), took, *where, r.reason)
    needed = Measurement.get(console, console.options.update_width(10_000), table).minimum
    if needed <= console.width:
        console.print(table)
        return
    console.print("build summary", highlight=False)
    for (label, platform, status, took, why), r in zip(rows, reports, strict=True):
        console.print(Text.assemble(f"  {label} {platform} ", (status, STYLE[r.status]), f" {took} {why}".rstrip()))
