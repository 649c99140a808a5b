"""The tarball of a ``rootfs_image``: a file of the workspace, or the output of a host script.

A script's output is cached by the node's key (``<cache>/rootfs/<key>.tar``): the script runs only
when its inputs changed. It receives ``OUT`` (the tarball to write) and ``PLATFORM``, runs in its
own directory, and its output goes to the node's log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from orchestrator.core.model import Node, RootfsTarget
from orchestrator.engine.api import BuildFailed


def log_tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def rootfs_tarball(
    *, root: Path, cache_dir: Path, target: RootfsTarget, node: Node, key: str, log: str, cancel: threading.Event
) -> str:
    if target.tarball is not None:
        return str(root / target.tarball)
    assert target.script is not None
    out = cache_dir / "rootfs" / f"{key}.tar"
    if out.is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}-{threading.get_ident()}")
    script = root / target.script
    argv = [str(script)] if os.access(script, os.X_OK) else ["/bin/sh", str(script)]
    env = {**os.environ, "OUT": str(partial), "PLATFORM": node.platform}
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as log_file:
        # A session of its own: cancelling stops the whole process group (debootstrap and its children).
        process = subprocess.Popen(
            argv, cwd=script.parent, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        while True:
            try:
                code = process.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if cancel.is_set():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGTERM)
                    process.wait()
                    partial.unlink(missing_ok=True)
                    raise BuildFailed(f"{node}: cancelled", log_path=log) from None
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        why = f"exited with {code}" if code != 0 else "did not write $OUT"
        raise BuildFailed(f"{node}: rootfs script {target.script} {why}", log_path=log, log_tail=log_tail(log))
    os.replace(partial, out)
    return str(out)
