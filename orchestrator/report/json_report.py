"""The machine-readable build report (``build --report PATH.json``).

Schema version 2, documented in docs/reference/report.md with a JSON Schema beside it
(docs/reference/build-report.schema.json): ``{"version": 2, "exit_code": int, "promoted": [ref...],
"pushed": [ref...], "warnings": [text...], "executor": {"requested", "used", "detail"}, "nodes":
[node...]}`` with one node object per (target, platform), parents first: ``label``, ``platform``,
``key``, ``status`` (built | cached | remote-cached | pulled | failed | skipped | cancelled),
``duration_s``, ``image_id``, ``tags``, ``log``, ``reason``, ``error``, ``log_tail``, ``executor``
(buildkit | classic), ``engine`` (its URL). Absent values are ``null``, never ``""``. Version 2 (step
10) added the ``executor`` and ``engine`` fields; every version 1 field is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.pipeline.summary import BuildSummary

SCHEMA_VERSION = 2


def report_data(summary: BuildSummary) -> dict[str, Any]:
    executor = summary.executor
    return {
        "version": SCHEMA_VERSION,
        "exit_code": summary.exit_code,
        "promoted": list(summary.promoted),
        "pushed": list(summary.published.pushed) if summary.published else [],
        "warnings": list(summary.warnings),
        "executor": {"requested": executor.requested, "used": executor.used, "detail": executor.detail},
        "nodes": [
            {
                "label": str(r.node.label),
                "platform": r.node.platform,
                "key": r.key,
                "status": str(r.status),
                "duration_s": r.duration_s,
                "image_id": r.image_id,
                "tags": list(r.tags),
                "log": r.log or None,  # a pulled node's record has no log
                "reason": r.reason,
                "error": r.error,
                "log_tail": r.log_tail or None,
                "executor": r.builder,
                "engine": r.engine,
            }
            for r in summary.reports
        ],
    }


def write_report(summary: BuildSummary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_data(summary), indent=2) + "\n")
