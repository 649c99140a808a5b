"""What one build did: a NodeReport per planned node, and the BuildSummary with its exit code.

``node_report`` turns a planned node, what the execution recorded for it (``done``) and its
scheduler outcome into the report the console, JSON, JUnit and markdown reporters read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.cache.records import BuildRecord
from orchestrator.core.model import Node
from orchestrator.errors import EXIT_BUILD_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
from orchestrator.pipeline import scheduler
from orchestrator.pipeline.plan import Action, Plan, PlannedNode
from orchestrator.registry.publish import Published


class NodeStatus(StrEnum):
    BUILT = "built"
    CACHED = "cached"
    REMOTE_CACHED = "remote-cached"  # in the registry cache, not needed here
    PULLED = "pulled"  # from the registry cache
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


OK_STATUSES = frozenset({NodeStatus.BUILT, NodeStatus.CACHED, NodeStatus.REMOTE_CACHED, NodeStatus.PULLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeReport:
    node: Node
    key: str
    status: NodeStatus
    reason: str
    duration_s: float | None = None
    image_id: str | None = None
    tags: tuple[str, ...] = ()
    log: str | None = None
    error: str | None = None
    log_tail: str | None = None
    builder: str | None = None  # "buildkit" | "classic": what built it (or ran its failed build)
    engine: str | None = None  # the URL of the engine that built it (or ran its failed build)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorUse:
    """The builder asked for, and the one used (None when nothing was to be built: never probed)."""

    requested: str  # auto | buildkit | classic
    used: str | None = None  # buildkit | classic
    detail: str | None = None  # how it was reached ("docker buildx build --load", ...)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildSummary:
    plan: Plan
    reports: tuple[NodeReport, ...]
    promoted: tuple[str, ...]
    interrupted: bool = False
    terminated: bool = False  # the interruption was a SIGTERM
    warnings: tuple[str, ...] = ()
    published: Published | None = None  # with --push
    executor: ExecutorUse = ExecutorUse(requested="auto")  # the builder asked for and used

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_TERMINATED if self.terminated else EXIT_INTERRUPTED
        if any(r.status not in OK_STATUSES for r in self.reports):
            return EXIT_BUILD_FAILED
        if self.published is not None and self.published.errors:
            return EXIT_BUILD_FAILED
        return EXIT_OK

    def count(self, status: NodeStatus) -> int:
        return sum(1 for r in self.reports if r.status is status)

    def by_node(self) -> dict[Node, NodeReport]:
        return {r.node: r for r in self.reports}


def node_report(
    planned: PlannedNode,
    done: tuple[NodeStatus, BuildRecord] | None,
    outcome: scheduler.Outcome[Node] | None,
) -> NodeReport:
    """The report of one planned node: what was done for it (``done``), else how its work ended."""
    # a registry hit a child on another engine fetched is done: reported as pulled
    if planned.action is Action.REMOTE and not planned.pull and done is None:
        return NodeReport(
            node=planned.node,
            key=planned.key,
            status=NodeStatus.REMOTE_CACHED,
            reason=planned.reason,
            duration_s=0.0,
            tags=(planned.image,),
        )
    if done is not None:
        status, record = done
        return NodeReport(
            node=planned.node,
            key=planned.key,
            status=status,
            reason=planned.reason,
            duration_s=record.duration_s if status in (NodeStatus.BUILT, NodeStatus.PULLED) else 0.0,
            image_id=record.image_id,
            tags=(record.image,),
            log=record.log,
        )
    if outcome is None or outcome.status is scheduler.Status.CANCELLED:
        return NodeReport(node=planned.node, key=planned.key, status=NodeStatus.CANCELLED, reason=planned.reason)
    if outcome.status is scheduler.Status.SKIPPED:
        because = f"skipped: {outcome.skipped_because} failed"
        return NodeReport(node=planned.node, key=planned.key, status=NodeStatus.SKIPPED, reason=because)
    error = outcome.error
    took = (outcome.finished or 0.0) - (outcome.started or 0.0)
    return NodeReport(
        node=planned.node,
        key=planned.key,
        status=NodeStatus.FAILED,
        reason=planned.reason,
        duration_s=round(took, 3),
        error=str(error),
        log=getattr(error, "log_path", None),
        log_tail=getattr(error, "log_tail", None),
    )


def prefer_work_done(first: NodeReport | None, second: NodeReport) -> NodeReport:
    """A node built or pulled by a first pass shows as that, not as cached by the second."""
    if first is not None and first.status in (NodeStatus.BUILT, NodeStatus.PULLED):
        return first
    return second


def all_reports(
    plan: Plan,
    done: Mapping[Node, tuple[NodeStatus, BuildRecord]],
    outcomes: Mapping[Node, scheduler.Outcome[Node]],
) -> dict[Node, NodeReport]:
    return {p.node: node_report(p, done.get(p.node), outcomes.get(p.node)) for p in plan.nodes}
