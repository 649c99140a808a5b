"""The scan gate: the workspace's scanner run on each image built, as part of its node.

    workspace(scan = "trivy image --exit-code 1 {ref}")

The command is split like a shell would (``shlex``; no shell runs it) and ``{ref}`` becomes the
node's content tag (``repository:key-<key>``), which the engine holds while the scan runs. It runs
on this machine, with the orchestrator's environment and ``DOCKER_HOST`` naming the engine that
holds the image (with its TLS directory, when it has one, as ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH``); its output goes to ``<build log>.scan.log``.

- After a build (``execute.py``), between the content tag and the record: exit 0 passes; another
  exit code, ``scan_timeout`` seconds or a command that cannot start fails the node. Its content
  tag is removed again, so nothing records, pushes or promotes the image.
- A pass is cached by (key, platform, command): the same image is not scanned twice by the same
  command. Only passes: a failure is scanned again next run.
- ``--rescan`` ignores the cached passes, and scans the cached and pulled nodes of the run too
  (``rescan``, after the builds): one that fails keeps its record and content tag, but is reported
  failed, so its human tags do not move.
- A scanner missing from PATH is ScannerMissing (exit 2), raised before anything is built.

    OrchestratorError
    ├── ScannerMissing        the command's program is not on PATH (exit 2)
    └── BuildFailed
        └── ScanFailed        the scan failed, timed out or could not start (exit 1: the node fails)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.cache import names
from orchestrator.cache.store import Store
from orchestrator.core.model import Node, WorkspaceSettings
from orchestrator.engine.api import BuildFailed, Executor, Progress
from orchestrator.engine.buildkit_probe import cli_environment
from orchestrator.errors import OrchestratorError
from orchestrator.pipeline.plan import Plan, PlannedNode
from orchestrator.pipeline.request import log_path
from orchestrator.pipeline.summary import NodeReport, NodeStatus

TAIL_LINES = 20  # of the scanner's output, in the failure
POLL_S = 0.2  # how soon a cancelled or timed-out scan is stopped


class ScannerMissing(OrchestratorError):
    """The scan command's program is not on PATH: nothing is bundled (exit 2, before anything is built)."""


class ScanFailed(BuildFailed):
    """The scan of a node's image failed; ``log_tail`` holds the scanner's last lines, ``log_path`` all of them."""


def scan_log(build_log: str) -> str:
    """Where a node's scan output goes: beside its build log."""
    return str(Path(build_log).with_suffix(".scan.log"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanGate:
    """One run's scanner: the command, where passes are cached, and the engines' TLS directories."""

    command: str  # as WORKSPACE gives it, with ``{ref}``
    store: Store
    timeout_s: float
    rescan: bool = False  # --rescan: cached passes are ignored (and written again)
    tls_dirs: Mapping[str, str] = field(default_factory=dict)  # engine URL -> its TLS directory
    environ: Mapping[str, str] | None = None  # the scanner's environment before DOCKER_HOST (None: os.environ)
    cwd: Path | None = None  # where it runs (the workspace root: ``tools/scan {ref}`` works from anywhere)

    @classmethod
    def of(
        cls, settings: WorkspaceSettings, store: Store, *, root: Path, rescan: bool, tls_dirs: Mapping[str, str]
    ) -> ScanGate | None:
        """The gate WORKSPACE's ``scan`` asks for (run in the workspace ``root``), or None."""
        if settings.scan is None:
            return None
        timeout_s = settings.scan_timeout_s
        return cls(command=settings.scan, store=store, timeout_s=timeout_s, rescan=rescan, tls_dirs=tls_dirs, cwd=root)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.command.encode()).hexdigest()

    def argv(self, reference: str) -> list[str]:
        """The command for ``reference``: split first, so the reference is one argument whatever it holds."""
        return [arg.replace("{ref}", reference) for arg in shlex.split(self.command)]

    def check(self) -> None:
        """ScannerMissing unless the command's program is found (on PATH, or at the path given)."""
        program = shlex.split(self.command)[0]
        relative = "/" in program and not os.path.isabs(program) and self.cwd is not None
        if shutil.which(str(self.cwd / program) if relative and self.cwd is not None else program) is None:
            raise ScannerMissing(
                f"the scanner {program!r} is not on PATH (WORKSPACE's workspace(scan = {self.command!r})); "
                "nothing is bundled: install it, or change or remove scan="
            )

    def passed(self, node: Node, key: str) -> bool:
        """Whether a pass of this command is cached for the image (always False with --rescan)."""
        return not self.rescan and self.store.get(names.scan(key, node.platform, self.digest)) is not None

    def gate(
        self,
        executor: Executor,
        engine_url: str,
        planned: PlannedNode,
        *,
        log: str,
        cancel: threading.Event,
        progress: Progress | None = None,
    ) -> None:
        """A newly built image's scan (unless a pass is cached); on failure its content tag
        (``planned.image``) is removed from the engine and ScanFailed raised. ``progress`` is told the scan started."""
        node, key, reference = planned.node, planned.key, planned.image
        if self.passed(node, key):
            return
        if progress is not None:
            progress(f"scan: {shlex.join(self.argv(reference))}")
        try:
            self.scan(engine_url, node, key, reference, log=log, cancel=cancel)
        except ScanFailed as exc:
            try:
                executor.remove_image(reference)
            except OrchestratorError as removing:
                exc.message += f"; its content tag {reference} could not be removed: {removing}"
            else:
                exc.message += f"; its content tag {reference} is removed"
            exc.args = (exc.message,)
            raise

    def scan(self, engine_url: str, node: Node, key: str, reference: str, *, log: str, cancel: threading.Event) -> None:
        """Scan ``reference`` (held by the engine at ``engine_url``); a pass is cached, a failure is ScanFailed."""
        stored = names.scan(key, node.platform, self.digest)
        argv = self.argv(reference)
        env = dict(os.environ if self.environ is None else self.environ)
        env.update(cli_environment(engine_url, env, tls_dir=self.tls_dirs.get(engine_url)))
        shown = shlex.join(argv)
        started = time.monotonic()
        outcome = _run(argv, env, log, self.timeout_s, cancel, self.cwd)
        if outcome == 0:
            self.store.set(
                stored,
                {
                    "command": self.command,
                    "passed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "duration_s": round(time.monotonic() - started, 3),
                },
            )
            return
        self.store.delete(stored)  # an earlier pass (of --rescan) no longer holds
        why = f"exited with code {outcome}" if isinstance(outcome, int) else outcome
        raise ScanFailed(f"{node}: scan failed: `{shown}` {why}", log_path=log, log_tail=_tail(log))


def _run(
    argv: list[str], env: dict[str, str], log: str, timeout_s: float, cancel: threading.Event, cwd: Path | None
) -> int | str:
    """The scanner's exit code, or why it has none (it could not start, timed out, was cancelled)."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            # its own process group, so that a timeout stops what it started too
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            out.write(f"cannot start: {exc}\n".encode())
            return f"could not start: {exc.strerror or exc}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                if cancel.is_set():
                    _stop(process)
                    return "was cancelled"
                if time.monotonic() >= deadline:
                    _stop(process)
                    out.write(f"\nstopped after {timeout_s:g} s (scan_timeout)\n".encode())
                    return f"timed out after {timeout_s:g} s (workspace(scan_timeout))"


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended by itself meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _tail(log: str) -> str:
    with open(log, encoding="utf-8", errors="replace") as text:
        return "\n".join(deque((line.rstrip("\n") for line in text), maxlen=TAIL_LINES))


def rescan(
    gate: ScanGate,
    plan: Plan,
    reports: Mapping[Node, NodeReport],
    engine_of: Callable[[NodeReport], str],
    *,
    cache_dir: Path,
    jobs: int,
) -> dict[Node, NodeReport]:
    """``reports`` with each cached or pulled node's image scanned again (``--rescan``, after the builds).

    One that fails is reported failed (its record and content tag stay: the image is what its key
    names); its human tags then do not move. ``engine_of`` is the URL of the engine holding a node's image.
    """
    images = {p.node: p.image for p in plan.nodes}
    again = [r for r in reports.values() if r.status in (NodeStatus.CACHED, NodeStatus.PULLED)]
    cancel = threading.Event()

    def scan_one(report: NodeReport) -> NodeReport:
        log = scan_log(log_path(cache_dir, report.node, report.key))
        try:
            gate.scan(engine_of(report), report.node, report.key, images[report.node], log=log, cancel=cancel)
        except ScanFailed as exc:
            return replace(report, status=NodeStatus.FAILED, error=str(exc), log=exc.log_path, log_tail=exc.log_tail)
        return report

    updated = dict(reports)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="scan")
    try:
        for report in pool.map(scan_one, again):
            updated[report.node] = report
    except BaseException:
        cancel.set()  # Ctrl-C: the scans running stop, the pool ends
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return updated
