"""Lint the selected targets and render the result: findings per target, silences applied.

A Dockerfile shared by several targets is linted by hadolint once, and its findings are reported
once per target (each target silences its own). What is silenced is not lost: it is listed as
ignored with its reason. Two kinds of silence:

- ``lint_ignore = {"DL3059": "why"}`` on the target (``by: "lint_ignore"``); an entry that
  silenced nothing is itself reported, ``ORC900`` (info), so stale silences are seen;
- hadolint's tag rules (DL3006, DL3007) on a FROM naming an image of the family
  (``by: "family"``): the orchestrator rebinds it to the exact image it builds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core.label import Label
from orchestrator.core.model import ImageTarget
from orchestrator.graph.graph import TargetGraph
from orchestrator.lint import Finding, Level
from orchestrator.lint.family import RULES, TAG_RULES, UNUSED_IGNORE, FamilyChecks
from orchestrator.lint.hadolint import lint_dockerfiles
from orchestrator.registry.pins import Resolver
from orchestrator.workspace.lockfile import Lock

JSON_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """A finding that a silence took out of the count, and why."""

    finding: Finding
    reason: str
    by: str  # "lint_ignore" | "family"


@dataclass(frozen=True, slots=True, kw_only=True)
class LintReport:
    targets: tuple[Label, ...]  # the image targets linted
    findings: tuple[Finding, ...]  # sorted by path, line, column, rule, target
    ignored: tuple[Ignored, ...]

    def counts(self) -> dict[str, int]:
        counts = {level.value: 0 for level in Level}
        for finding in self.findings:
            counts[finding.level.value] += 1
        return {**counts, "total": len(self.findings), "ignored": len(self.ignored)}

    def fails(self, threshold: Level) -> bool:
        """Whether a finding at ``threshold`` or above is left."""
        return any(finding.level.rank >= threshold.rank for finding in self.findings)


def lint(
    root: Path,
    graph: TargetGraph,
    labels: Iterable[Label],
    *,
    jobs: int | None = None,
    lock: Lock | None = None,
    bases: Resolver | None = None,
) -> LintReport:
    """hadolint and the family checks on the image targets among ``labels``.

    ``bases``: where ORC005 and ORC006 look for external bases images.lock (``lock``) does not
    pin; without it, they are not checked.
    """
    targets = [t for label in sorted(set(labels)) if isinstance(t := graph.targets[label], ImageTarget)]
    family = FamilyChecks(root, graph, lock=lock, bases=bases)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lint") as pool:
        # hadolint (subprocesses, in parallel) runs while the family checks walk the graph here.
        hadolint = pool.submit(lint_dockerfiles, root, [t.dockerfile for t in targets], jobs=jobs)
        checked = {t.label: (family.check(t.label), family.internal_from_lines(t.label)) for t in targets}
        by_dockerfile = hadolint.result()
    findings: list[Finding] = []
    ignored: list[Ignored] = []
    for target in targets:
        own, internal = checked[target.label]
        raw = [f.for_target(target.label) for f in by_dockerfile[target.dockerfile]] + own
        kept, silenced = _silence(root, target, raw, internal)
        findings += kept
        ignored += silenced
    return LintReport(
        targets=tuple(t.label for t in targets),
        findings=tuple(sorted(findings, key=Finding.sort_key)),
        ignored=tuple(sorted(ignored, key=lambda i: i.finding.sort_key())),
    )


def _silence(
    root: Path, target: ImageTarget, raw: Sequence[Finding], internal: Mapping[int, str]
) -> tuple[list[Finding], list[Ignored]]:
    kept: list[Finding] = []
    ignored: list[Ignored] = []
    rules = dict(target.lint_ignore)
    used: set[str] = set()

    def keep(finding: Finding) -> None:
        if finding.rule in rules:
            used.add(finding.rule)
            ignored.append(Ignored(finding=finding, reason=rules[finding.rule], by="lint_ignore"))
        else:
            kept.append(finding)

    for finding in raw:
        image = internal.get(finding.line) if finding.rule in TAG_RULES and finding.line is not None else None
        if image is not None:
            reason = f"{image} is an image of the family: the orchestrator rebinds it to the exact image"
            ignored.append(Ignored(finding=finding, reason=reason, by="family"))
        else:
            keep(finding)
    for rule, _ in target.lint_ignore:
        if rule not in used and rule != UNUSED_IGNORE:
            keep(_unused(root, target, rule))
    return kept, ignored


def _unused(root: Path, target: ImageTarget, rule: str) -> Finding:
    line = _line_naming(root / target.build_file, rule)
    return Finding(
        rule=UNUSED_IGNORE,
        level=RULES[UNUSED_IGNORE][0],
        path=target.build_file,
        line=line,
        column=None if line is None else 1,
        message=f"unused lint_ignore entry {rule!r}: nothing of {target.label} is reported for it; remove it",
        target=target.label,
    )


def _line_naming(path: Path, rule: str) -> int | None:
    """The first line of a BUILD file with ``"rule"`` quoted (None when a macro sets it elsewhere)."""
    pattern = re.compile(rf"""["']{re.escape(rule)}["']""")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return next((n for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)), None)


# --- Rendering ------------------------------------------------------------------------------------


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "level": finding.level.value,
        "path": finding.path,
        "line": finding.line,
        "column": finding.column,
        "message": finding.message,
        "target": None if finding.target is None else str(finding.target),
    }


def to_json(report: LintReport) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "findings": [finding_json(f) for f in report.findings],
        "ignored": [{**finding_json(i.finding), "reason": i.reason, "by": i.by} for i in report.ignored],
        "counts": report.counts(),
    }


def finding_line(finding: Finding) -> str:
    """``path:line:col: LEVEL RULE message (//pkg:target)``; the position is left out where unknown."""
    where = finding.path
    if finding.line is not None:
        where += f":{finding.line}" + (f":{finding.column}" if finding.column is not None else "")
    suffix = f" ({finding.target})" if finding.target is not None else ""
    return f"{where}: {finding.level.value.upper()} {finding.rule} {finding.message}{suffix}"


def to_text(report: LintReport, *, show_ignored: bool = False) -> str:
    lines = [finding_line(f) for f in report.findings]
    if show_ignored:
        lines += [f"{finding_line(i.finding)} [ignored: {i.reason}]" for i in report.ignored]
    lines.append(summary(report, show_ignored=show_ignored))
    return "\n".join(lines) + "\n"


def summary(report: LintReport, *, show_ignored: bool = False) -> str:
    counts = report.counts()
    targets = f"{len(report.targets)} target{'s' * (len(report.targets) != 1)}"
    if report.findings:
        by_level = ", ".join(f"{counts[level.value]} {level.value}" for level in Level)
        text = f"{counts['total']} finding{'s' * (counts['total'] != 1)} in {targets} ({by_level})"
    else:
        text = f"no findings in {targets}"
    if report.ignored:
        text += f"; {counts['ignored']} ignored" + ("" if show_ignored else " (--show-ignored lists them)")
    return text
