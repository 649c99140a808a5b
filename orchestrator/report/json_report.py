"""The machine-readable build report (``build --report PATH.json``).

Schema version 1, documented in docs/reference/report.md with a JSON Schema beside it
(docs/reference/build-report.schema.json): ``{"version": 1, "exit_code": int, "promoted": [ref...],
"pushed": [ref...], "warnings": [text...], "nodes": [node...]}`` with one node object per (target,
platform), parents first: ``label``, ``platform``, ``key``, ``status`` (built | cached | remote-cached |
pulled | failed | skipped | cancelled), ``duration_s``, ``image_id``, ``tags``, ``log``, ``reason``,
``error``, ``log_tail``. Absent values are ``null``, never ``""``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.pipeline.summary import BuildSummary

SCHEMA_VERSION = 1


def report_data(summary: BuildSummary) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "exit_code": summary.exit_code,
        "promoted": list(summary.promoted),
        "pushed": list(summary.published.pushed) if summary.published else [],
        "warnings": list(summary.warnings),
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
            }
            for r in summary.reports
        ],
    }


def write_report(summary: BuildSummary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_data(summary), indent=2) + "\n")
