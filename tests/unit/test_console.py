"""The console display: heartbeat lines on a fake clock, steps in the live view, push lines, and the
summary (a failure named once, cancelled nodes, labels never split, escapes stripped without a terminal).
"""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path

from rich.console import Console

from orchestrator.core.label import Label
from orchestrator.core.model import Node
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.plan import Plan
from orchestrator.pipeline.summary import BuildSummary, NodeReport, NodeStatus
from orchestrator.registry.cache import RemoteCache
from orchestrator.report.console import HEARTBEAT_S, TICK_S, ConsoleDisplay, print_summary, strip_ansi
from tests.fakes.executor import STEP, FakeExecutor
from tests.fakes.registry import FakeRegistry
from tests.unit.test_reports import run_build
from tests.workspaces import ScratchWorkspace

NODE = Node(label=Label.parse("//base:os"), platform="linux/amd64")
LONG = Node(label=Label.parse("//lang/python:company-python-base-with-a-very-long-name"), platform="linux/arm64/v8")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_console(width: int = 120) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=False, color_system=None), out


def lines_of(out: io.StringIO) -> list[str]:
    return [line.rstrip() for line in out.getvalue().splitlines()]


def test_without_a_terminal_a_quiet_build_gets_a_heartbeat_line_at_least_every_30_seconds() -> None:
    clock = Clock()
    console, out = plain_console()
    display = ConsoleDisplay(console, clock=clock, tick_s=None)  # the default heartbeat; beat() called here
    display.started(NODE)
    display.step(NODE, "Step 3/7 : RUN sleep 45")
    printed_at = [clock.now]  # START
    for _ in range(int(120 / TICK_S)):  # two quiet minutes, looked at every tick as the thread does
        clock.now += TICK_S
        before = len(lines_of(out))
        display.beat()
        printed_at += [clock.now] * (len(lines_of(out)) - before)
    gaps = [b - a for a, b in itertools.pairwise(printed_at)]
    assert max(gaps) <= 30 and min(gaps) >= HEARTBEAT_S
    assert lines_of(out)[1] == f"BUILDING //base:os linux/amd64 ({HEARTBEAT_S:.0f}s) Step 3/7 : RUN sleep 45"
    assert len(printed_at) == 1 + int(120 // HEARTBEAT_S)


def test_a_heartbeat_names_the_latest_step_and_stops_when_the_node_finishes() -> None:
    clock = Clock()
    console, out = plain_console()
    display = ConsoleDisplay(console, clock=clock, heartbeat_s=30, tick_s=None)
    display.started(NODE)
    display.step(NODE, "Step 1/2 : FROM busybox")
    clock.now += 29.9
    display.beat()
    assert lines_of(out) == ["START //base:os linux/amd64"]
    display.step(NODE, "Step 2/2 : RUN \x1b[1mmake\x1b[0m   all")
    clock.now += 0.1
    display.beat()
    display.finished(scheduler.Outcome(node=NODE, status=scheduler.Status.SUCCEEDED))
    clock.now += 60
    display.beat()
    assert lines_of(out)[1:] == [
        "BUILDING //base:os linux/amd64 (30s) Step 2/2 : RUN make all",
        "BUILT   //base:os linux/amd64 (30.0s)",
    ]


def test_pushes_print_a_line_when_they_start_and_end_and_beat_while_they_run() -> None:
    clock = Clock()
    console, out = plain_console()
    display = ConsoleDisplay(console, clock=clock, heartbeat_s=30, tick_s=None)
    display.push_started(NODE)
    display.push_started(LONG)
    clock.now += 30
    display.beat()
    display.push_finished(NODE, pushed=True)
    clock.now += 2.5
    display.push_finished(LONG, pushed=False)
    assert lines_of(out) == [
        f"PUSH    {NODE} to the registry cache",
        f"PUSH    {LONG} to the registry cache",
        f"PUSHING {NODE} (30s)",
        f"PUSHING {LONG} (30s)",
        f"PUSHED  {NODE} (30.0s)",
        f"PUSH FAILED {LONG} (32.5s)",
    ]


def test_a_cancelled_node_is_printed_as_cancelled_not_skipped() -> None:
    console, out = plain_console()
    display = ConsoleDisplay(console, tick_s=None)
    display.finished(scheduler.Outcome(node=NODE, status=scheduler.Status.CANCELLED))
    display.finished(scheduler.Outcome(node=LONG, status=scheduler.Status.SKIPPED, skipped_because=NODE))
    assert lines_of(out) == [f"CANCELLED {NODE}", f"SKIPPED {LONG}"]
    assert display.counts["cancelled"] == 1 and display.counts["skipped"] == 1


def test_the_live_view_shows_each_building_nodes_current_step() -> None:
    clock = Clock()
    console, _ = plain_console()
    display = ConsoleDisplay(console, clock=clock, tick_s=None)
    display.started(NODE)
    display.step(NODE, "Step 3/7 : RUN apt-get update")
    clock.now += 12
    display.push_started(LONG)
    shown, out = plain_console()
    shown.print(display.view())
    assert lines_of(out)[:2] == [
        f"  building {NODE} (12s) Step 3/7 : RUN apt-get update",
        f"  pushing {LONG} (0s)",
    ]


def test_the_pipeline_tells_its_listener_of_steps_and_pushes(family: ScratchWorkspace) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.events: list[tuple[str, str]] = []

        def planned(self, plan: Plan) -> None:
            pass

        def started(self, node: Node) -> None:
            pass

        def finished(self, outcome: scheduler.Outcome[Node]) -> None:
            pass

        def step(self, node: Node, step: str) -> None:
            self.events.append(("step", f"{node}: {step}"))

        def push_started(self, node: Node) -> None:
            self.events.append(("push", str(node)))

        def push_finished(self, node: Node, *, pushed: bool) -> None:
            self.events.append(("pushed" if pushed else "push failed", str(node)))

    registry = FakeRegistry()
    recorder = Recorder()
    summary = run_build(family, FakeExecutor(registry=registry), remote=RemoteCache(registry), listener=recorder)
    built = sorted(str(r.node) for r in summary.reports if r.status is NodeStatus.BUILT)
    assert built
    assert sorted(e for kind, e in recorder.events if kind == "step") == [f"{node}: {STEP}" for node in built]
    assert sorted(e for kind, e in recorder.events if kind == "push") == built
    assert sorted(e for kind, e in recorder.events if kind == "pushed") == built


def summary_of(*reports: NodeReport) -> BuildSummary:
    return BuildSummary(plan=Plan(nodes=(), selected=frozenset()), reports=reports, promoted=())


def failed(node: Node, error: str, tail: str = "") -> NodeReport:
    return NodeReport(
        node=node, key="k", status=NodeStatus.FAILED, reason="no record", error=error, log_tail=tail, log="/l"
    )


def test_a_failure_names_the_node_once_and_its_tail_has_no_escapes_without_a_terminal() -> None:
    console, out = plain_console()
    tail = "Step 2/2 : RUN make\n\x1b[31mmake: *** [all] Error 2\x1b[0m"
    print_summary(console, summary_of(failed(NODE, f"{NODE}: The command '/bin/sh -c make' returned 2", tail)))
    text = out.getvalue()
    assert f"FAILED {NODE}: The command '/bin/sh -c make' returned 2\n" in text
    assert "make: *** [all] Error 2\n" in text and "\x1b" not in text


def test_on_a_terminal_the_tail_keeps_its_colours() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system="standard")
    print_summary(console, summary_of(failed(NODE, "boom", "\x1b[31mred\x1b[0m")))
    assert "\x1b[31m" in out.getvalue() or "\x1b[2;31m" in out.getvalue()
    assert "red" in strip_ansi(out.getvalue())


def test_the_summary_table_never_splits_a_label_or_platform() -> None:
    reason = "no record of this key: the Dockerfile, requirements.txt and three other inputs changed since"
    for width in (120, 80, 60):
        console, out = plain_console(width)
        print_summary(
            console,
            summary_of(
                NodeReport(node=LONG, key="k", status=NodeStatus.BUILT, reason=reason, duration_s=12.5),
                NodeReport(node=NODE, key="k", status=NodeStatus.CANCELLED, reason=reason),
            ),
        )
        text = out.getvalue()
        assert str(LONG.label) in text and LONG.platform in text, width
        assert "cancelled" in text and max(len(line) for line in text.splitlines()) <= width


def test_with_several_engines_the_summary_says_where_each_node_is() -> None:
    for width in (160, 60):
        console, out = plain_console(width)
        print_summary(
            console,
            summary_of(
                NodeReport(node=NODE, key="k", status=NodeStatus.BUILT, reason="new", engine="tcp://10.0.0.5:2376"),
                NodeReport(node=LONG, key="k", status=NodeStatus.BUILT, reason="new", engine="unix:///b.sock"),
            ),
        )
        text = out.getvalue()
        assert "tcp://10.0.0.5:2376" in text and "unix:///b.sock" in text, text
    console, out = plain_console(160)
    print_summary(
        console, summary_of(NodeReport(node=NODE, key="k", status=NodeStatus.BUILT, reason="new", engine="e"))
    )
    assert "engine" not in out.getvalue()  # one engine: no column


def test_strip_ansi_removes_colours_cursor_moves_and_titles() -> None:
    assert strip_ansi("\x1b[1;32mok\x1b[0m \x1b[2K\x1b]0;title\x07done\x1b(B") == "ok done"


def test_log_paths_and_warnings_are_not_read_as_markup(tmp_path: Path) -> None:
    console, out = plain_console()
    log = str(tmp_path / "logs" / "[x].log")  # brackets are not markup
    report = NodeReport(node=NODE, key="k", status=NodeStatus.FAILED, reason="r", error="boom", log=log)
    summary = summary_of(report)
    print_summary(console, BuildSummary(plan=summary.plan, reports=summary.reports, promoted=(), warnings=("[y] z",)))
    assert f"full log: {log}" in out.getvalue() and "WARNING [y] z" in out.getvalue()


def test_the_heartbeat_thread_beats_until_stopped() -> None:
    console, out = plain_console()
    display = ConsoleDisplay(console, heartbeat_s=0.05, tick_s=0.01)
    display.started(NODE)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(line.startswith("BUILDING") for line in lines_of(out)):
        time.sleep(0.01)
    display.stop()
    printed = len(lines_of(out))
    time.sleep(0.1)
    assert any(line.startswith(f"BUILDING {NODE}") for line in lines_of(out))
    assert len(lines_of(out)) == printed  # nothing after stop()
