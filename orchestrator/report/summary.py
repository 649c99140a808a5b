"""A short markdown summary of a build or a test run, for ``$GITHUB_STEP_SUMMARY``.

When the variable names a file, ``build`` and ``test`` append to it (GitHub shows it on the run's
page): the counts by status, a table of the nodes that were worked on (built, pulled, failed,
skipped, cancelled; cached ones are counted, not listed), each failure with the first lines of its
log tail in a collapsible ``<details>``, the references pushed; for ``test``, the failed checks
and the tests that could not run. Writing it is best effort: a failure is a warning, never the
command's failure.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from orchestrator.imagetest.checks import CheckResult
from orchestrator.pipeline.summary import BuildSummary, NodeReport, NodeStatus

ENV_VAR = "GITHUB_STEP_SUMMARY"
MAX_ROWS = 50  # of the node table and of the failed checks (the JSON report has them all)
MAX_FAILURES = 10  # failures shown with their log
LOG_LINES = 25  # of a failure's log tail
LOG_CHARS = 4000

LISTED = (NodeStatus.BUILT, NodeStatus.PULLED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED)
ICONS = {
    NodeStatus.BUILT: "✅",
    NodeStatus.PULLED: "⬇️",
    NodeStatus.FAILED: "❌",
    NodeStatus.SKIPPED: "⏭️",
    NodeStatus.CANCELLED: "⏹️",
}


class ImageTestRun(Protocol):
    """One (test, platform) of ``orchestrator test`` as the summary needs it (the CLI's JobOutcome)."""

    @property
    def job(self) -> object: ...  # str(job): "//pkg:test linux/amd64"
    @property
    def results(self) -> Sequence[CheckResult]: ...
    @property
    def cached(self) -> bool: ...
    @property
    def error(self) -> str | None: ...


# --- rendering ------------------------------------------------------------------------------------


def build_markdown(summary: BuildSummary, *, title: str = "orchestrator build", level: int = 2) -> str:
    """The build's section: a heading with the outcome, counts, the node table, failures, pushes."""
    h = "#" * level
    out = [f"{h} {title}: {_outcome(summary)}", "", _counts(summary), ""]
    listed = [r for r in summary.reports if r.status in LISTED]
    if listed:
        out += ["| target | platform | status | time | why |", "|---|---|---|---|---|"]
        for r in listed[:MAX_ROWS]:
            took = f"{r.duration_s:.1f}s" if r.duration_s else ""
            status = f"{ICONS[r.status]} {r.status}"
            out.append(f"| {_code(str(r.node.label))} | {r.node.platform} | {status} | {took} | {_cell(r.reason)} |")
        if len(listed) > MAX_ROWS:
            out.append(f"\n… and {len(listed) - MAX_ROWS} more (the JSON report, `--report`, lists them all)")
        out.append("")
    failed = [r for r in summary.reports if r.status is NodeStatus.FAILED]
    if failed:
        out += [f"{h}# Failures", ""]
        for r in failed[:MAX_FAILURES]:
            out += _failure(r)
        if len(failed) > MAX_FAILURES:
            out += [f"… and {len(failed) - MAX_FAILURES} more failures", ""]
    published = summary.published
    if published is not None and published.pushed:
        out += [f"{h}# Pushed", "", *(f"- {_code(ref)}" for ref in published.pushed), ""]
    if published is not None and published.errors:
        out += [f"{h}# Push failed", "", *(f"- {_cell(error)}" for error in published.errors), ""]
    if summary.warnings:
        out += [f"{h}# Warnings", "", *(f"- {_cell(warning)}" for warning in summary.warnings), ""]
    return "\n".join(out)


def image_tests_markdown(runs: Sequence[ImageTestRun], exit_code: int, build: BuildSummary | None = None) -> str:
    """``orchestrator test``'s section: counts, failed checks, tests that could not run, then the build's."""
    checks = [c for run in runs for c in run.results]
    failed_checks = sum(1 for c in checks if not c.passed)
    errors = [run for run in runs if run.error is not None]
    failed = sum(1 for run in runs if any(not c.passed for c in run.results))
    cached = sum(1 for run in runs if run.cached)
    outcome = "✅ passed" if exit_code == 0 else f"❌ failed (exit {exit_code})"
    out = [
        f"## orchestrator test: {outcome}",
        "",
        f"**{len(runs)} test runs**: {len(runs) - failed - len(errors)} passed, {failed} failed, "
        f"{len(errors)} could not run ({cached} cached); "
        f"{len(checks) - failed_checks} checks passed, {failed_checks} failed",
        "",
    ]
    failures = [(run, c) for run in runs for c in run.results if not c.passed]
    if failures:
        out += ["### Failed checks", "", "| test | check | message |", "|---|---|---|"]
        for run, check in failures[:MAX_ROWS]:
            out.append(f"| {_code(str(run.job))} | {_cell(check.name)} | {_cell(check.message)} |")
        if len(failures) > MAX_ROWS:
            out.append(f"\n… and {len(failures) - MAX_ROWS} more failed checks")
        out.append("")
    if errors:
        out += ["### Could not run", "", *(f"- {_code(str(run.job))}: {_cell(run.error or '')}" for run in errors), ""]
    if build is not None:
        out.append(build_markdown(build, title="images for the tests", level=3))
    return "\n".join(out)


def _outcome(summary: BuildSummary) -> str:
    code = summary.exit_code
    if summary.interrupted:
        return f"⏹️ interrupted (exit {code})"
    return "✅ succeeded" if code == 0 else f"❌ failed (exit {code})"


def _counts(summary: BuildSummary) -> str:
    shown = ", ".join(f"{summary.count(s)} {s}" for s in NodeStatus if summary.count(s))
    return f"**{len(summary.reports)} nodes**" + (f": {shown}" if shown else "")


def _failure(report: NodeReport) -> list[str]:
    error = (report.error or "failed").removeprefix(f"{report.node}: ")
    label, error = html.escape(str(report.node.label), quote=False), html.escape(_line(error), quote=False)
    head = f"❌ <code>{label}</code> {report.node.platform}: {error}"
    lines = ["<details>", f"<summary>{head}</summary>", ""]
    if report.log_tail:
        tail = "\n".join(report.log_tail.rstrip().splitlines()[:LOG_LINES])[:LOG_CHARS]
        fence = "`" * max(3, _longest_backtick_run(tail) + 1)  # a fence the log cannot close
        lines += [f"{fence}text", tail, fence, ""]
    if report.log:
        lines += [f"Full log on the runner: {_code(report.log)}", ""]
    return [*lines, "</details>", ""]


def _line(text: str) -> str:
    """One line: newlines become spaces."""
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Text safe in a table cell: one line, HTML and pipes escaped."""
    return html.escape(_line(text), quote=False).replace("|", "\\|")


def _code(text: str) -> str:
    """An inline code span that ``text``'s own backticks cannot end."""
    text = _line(text).replace("|", "\\|")
    ticks = "`" * (_longest_backtick_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall("`+", text)), default=0)


# --- writing --------------------------------------------------------------------------------------


def write_step_summary(
    render: Callable[[], str], *, warn: Callable[[str], None], environ: Mapping[str, str] | None = None
) -> bool:
    """Append ``render()`` to the file ``$GITHUB_STEP_SUMMARY`` names, if it names one.

    Returns whether something was written. Nothing here fails the command: a summary that cannot be
    rendered or written is reported through ``warn``.
    """
    path = (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not path:
        return False
    try:
        text = render()
        with open(path, "a", encoding="utf-8", errors="replace") as handle:
            handle.write(text.rstrip("\n") + "\n\n")
    except Exception as exc:  # the summary is a courtesy: whatever went wrong, the command's result stands
        warn(f"cannot write the step summary to {path} (${ENV_VAR}): {exc}")
        return False
    return True
