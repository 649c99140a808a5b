"""A build as JUnit XML (``build --junit PATH``, and the build part of ``test --junit PATH``).

One suite per platform, named ``build linux/amd64``; one case per node of the plan, parents first:
classname the label, name what was done to it (``build``, ``pull``, ``cached``, ``remote-cached``).
A failed node is a ``<failure>`` (its error, then its log tail and where the full log is), a skipped
or cancelled one is ``<skipped>`` with the reason, the others pass; cached ones take no time. The
model and the writer are the image tests' (:mod:`orchestrator.imagetest.junit`), so one file can
hold a build's suites and the tests' suites.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.imagetest.junit import Case, Suite, write_junit
from orchestrator.pipeline.plan import Action, PlannedNode
from orchestrator.pipeline.summary import BuildSummary, NodeReport, NodeStatus

SUITE_PREFIX = "build "

_CASE_NAMES = {
    NodeStatus.BUILT: "build",
    NodeStatus.PULLED: "pull",
    NodeStatus.CACHED: "cached",
    NodeStatus.REMOTE_CACHED: "remote-cached",
}


def build_suites(summary: BuildSummary) -> list[Suite]:
    """The build's suites, one per platform (sorted), its nodes' cases in the plan's order."""
    planned = summary.plan.by_node()
    by_platform: dict[str, list[Case]] = {}
    for report in summary.reports:
        by_platform.setdefault(report.node.platform, []).append(node_case(report, planned.get(report.node)))
    return [
        Suite(
            name=f"{SUITE_PREFIX}{platform}",
            cases=tuple(cases),
            properties=(("kind", "build"), ("platform", platform)),
        )
        for platform, cases in sorted(by_platform.items())
    ]


def node_case(report: NodeReport, planned: PlannedNode | None = None) -> Case:
    name = _CASE_NAMES.get(report.status)
    if name is None:  # failed, skipped, cancelled: named after the work that was planned
        name = "pull" if planned is not None and planned.action is Action.REMOTE else "build"
    label = str(report.node.label)
    if report.status is NodeStatus.FAILED:
        return Case(
            name=name,
            classname=label,
            time_s=report.duration_s or 0.0,
            failure=report.error or f"{report.node} failed",
            details=_failure_text(report),
            system_out=_out(report),
        )
    if report.status is NodeStatus.SKIPPED:
        return Case(name=name, classname=label, skipped=report.reason, system_out=_out(report))
    if report.status is NodeStatus.CANCELLED:
        why = f"cancelled: the build was interrupted before {report.node} finished"
        return Case(name=name, classname=label, skipped=why, system_out=_out(report))
    worked = report.status in (NodeStatus.BUILT, NodeStatus.PULLED)
    took = (report.duration_s or 0.0) if worked else 0.0  # cached: no time spent
    return Case(name=name, classname=label, time_s=took, system_out=_out(report))


def _failure_text(report: NodeReport) -> str:
    parts = [report.error or ""]
    if report.log_tail:
        parts.append(report.log_tail.rstrip())
    if report.log:
        parts.append(f"full log: {report.log}")
    return "\n\n".join(p for p in parts if p)


def _out(report: NodeReport) -> str:
    lines = [f"{report.status}: {report.reason}", f"key: {report.key}"]
    lines += [f"image: {tag}" for tag in report.tags]
    if report.image_id:
        lines.append(f"image id: {report.image_id}")
    if report.log:
        lines.append(f"log: {report.log}")
    return "\n".join(lines) + "\n"


def write_build_junit(path: Path | str, summary: BuildSummary, extra: Sequence[Suite] = ()) -> None:
    """The build's suites, then ``extra`` (the image tests'), as one file."""
    write_junit(path, [*build_suites(summary), *extra])
