"""What a person sees while building: a live view of running nodes, then a summary.

On a terminal, a rich Live display shows one line per running node and the counts so far; else
(CI logs) one plain line per event. Failed nodes get the tail of their log and its path.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.core.model import Node
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.plan import Action, Plan
from orchestrator.pipeline.summary import BuildSummary, NodeStatus

STYLE = {
    NodeStatus.BUILT: "green",
    NodeStatus.CACHED: "dim",
    NodeStatus.REMOTE_CACHED: "cyan",
    NodeStatus.PULLED: "cyan",
    NodeStatus.FAILED: "bold red",
    NodeStatus.SKIPPED: "yellow",
    NodeStatus.CANCELLED: "yellow",
}


class ConsoleDisplay:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.started_at = time.monotonic()
        self.running: dict[Node, float] = {}
        self.counts = {"built": 0, "pulled": 0, "failed": 0, "skipped": 0, "cached": 0}
        self.pulls: set[Node] = set()
        self.total = 0
        self.live: Live | None = None
        self._lock = threading.Lock()

    # -- scheduler.Listener ---------------------------------------------------------------------
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
            self.live = Live(console=self.console, refresh_per_second=4, transient=True, get_renderable=self._render)
            self.live.start()

    def started(self, node: Node) -> None:
        with self._lock:
            self.running[node] = time.monotonic()
        if self.live is None:
            self.console.print(f"[blue]START[/] {node}", highlight=False)
        self._refresh()

    def finished(self, outcome: scheduler.Outcome[Node]) -> None:
        with self._lock:
            began = self.running.pop(outcome.node, None)
            word = {
                scheduler.Status.SUCCEEDED: "pulled" if outcome.node in self.pulls else "built",
                scheduler.Status.FAILED: "failed",
                scheduler.Status.SKIPPED: "skipped",
                scheduler.Status.CANCELLED: "skipped",
            }[outcome.status]
            self.counts[word] += 1
        took = f" ({time.monotonic() - began:.1f}s)" if began is not None else ""
        line = f"{word.upper():7} {outcome.node}{took}"
        if self.live is not None:
            self.live.console.print(line, highlight=False)
        else:
            self.console.print(line, highlight=False)
        self._refresh()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    # -- rendering -----------------------------------------------------------------------------
    def _refresh(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def _render(self) -> Group:
        now = time.monotonic()
        with self._lock:
            running = sorted(self.running.items())
        lines = [
            Text(f"  {'pulling' if node in self.pulls else 'building'} {node} ({now - began:.0f}s)")
            for node, began in running
        ]
        c = self.counts
        status = Text(
            f"built {c['built']}  pulled {c['pulled']}  cached {c['cached']}  failed {c['failed']}"
            f"  skipped {c['skipped']}  of {self.total}  elapsed {now - self.started_at:.0f}s"
        )
        return Group(*lines, status)


def print_summary(console: Console, summary: BuildSummary) -> None:
    interesting = [r for r in summary.reports if r.status is not NodeStatus.CACHED]
    if interesting:
        table = Table(title="build summary", show_lines=False)
        for column in ("target", "platform", "status", "time", "why"):
            table.add_column(column, overflow="fold")
        for r in interesting:
            took = f"{r.duration_s:.1f}s" if r.duration_s else ""
            table.add_row(
                str(r.node.label), r.node.platform, Text(str(r.status), style=STYLE[r.status]), took, r.reason
            )
        console.print(table)
    for r in summary.reports:
        if r.status is NodeStatus.FAILED:
            console.print(f"[bold red]FAILED[/] {r.node}: {r.error}", highlight=False)
            if r.log_tail:
                console.print(Text(r.log_tail.rstrip()), style="dim")
            if r.log:
                console.print(f"full log: {r.log}", highlight=False)
    counts = ", ".join(
        f"{summary.count(s)} {s}" for s in NodeStatus if summary.count(s) or s in (NodeStatus.BUILT, NodeStatus.CACHED)
    )
    console.print(f"{counts}; exit {summary.exit_code}", highlight=False)
    for ref in summary.promoted:
        console.print(f"tagged {ref}", highlight=False)  # only references that moved
    for warning in summary.warnings:
        console.print(f"[yellow]WARNING[/] {warning}", highlight=False)
    if summary.published is not None:
        for ref in summary.published.pushed:
            console.print(f"pushed {ref}", highlight=False)
        if summary.published.unchanged:
            console.print(
                f"{len(summary.published.unchanged)} tags already up to date in the registry", highlight=False
            )
        for error in summary.published.errors:
            console.print(f"[bold red]PUSH FAILED[/] {error}", highlight=False)
