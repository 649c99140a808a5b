"""Helpers shared by the benchmarks: timing whole commands, medians, a results table, copies of
BUILD.examples (also used by tests/integration/test_executors_differential.py)."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORCHESTRATOR = [sys.executable, "-m", "orchestrator"]
EXAMPLES = ROOT / "BUILD.examples"
# The family's images; their repositories are their names (image()'s default).
EXAMPLE_IMAGES = (
    "company-base",
    "company-node-base",
    "company-python-base",
    "node-app",
    "python-app",
    "static-hello",
    "secure-hello",
)
# The rootfs's repository, and the tag its FROM lines name.
EXAMPLE_ROOTFS = "debian"


def run_timed(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    """Wall time of one command, which must succeed."""
    started = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-2000:]}")
    return elapsed


def median_of(times: Sequence[float]) -> float:
    return statistics.median(times)


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


_NAMES = re.compile(r"(?<![\w/.-])(" + "|".join(re.escape(n) for n in EXAMPLE_IMAGES) + r")(?![\w-])")
_ROOTFS_FROM = re.compile(r"^(FROM\s+)" + EXAMPLE_ROOTFS + r"(?=:bookworm\b)", re.MULTILINE)


def examples_copy(dest: Path, prefix: str, nonce: str, *, rootfs: bool = False, srcs_glob: bool = False) -> None:
    """BUILD.examples at ``dest``, amd64 only, repositories (and target names) ``<prefix>*``, the nonce in.

    The nonce goes in as ``ENV BENCH_NONCE=<nonce>`` after the first FROM of the two images built on
    debian:bookworm (company-base, static-hello's builder stage): every image built from the copy
    is new to both builders' layer caches. With ``rootfs``, the rootfs's repository is renamed too
    (``<prefix>debian``, and the FROM lines naming it); its key does not change (a repository is
    not an input of a rootfs key), so a tarball of the real cache still answers for it. Unless
    ``srcs_glob``, python-app's ``srcs = glob(["app/**"])`` is dropped (see below).
    """
    shutil.copytree(EXAMPLES, dest, symlinks=True)
    workspace = dest / "WORKSPACE"
    text = workspace.read_text()
    text = re.sub(r"platforms = \[[^\]]*\]", 'platforms = ["linux/amd64"]', text)
    workspace.write_text(re.sub(r'\n\s*cache_dir = "[^"]*",', "", text))
    for path in dest.rglob("*"):
        if path.is_file() and (path.name in ("BUILD", "Dockerfile") or path.suffix == ".star"):
            text = _NAMES.sub(lambda m: prefix + m.group(1), path.read_text())
            if rootfs and path.name == "Dockerfile":
                text = _ROOTFS_FROM.sub(lambda m: m.group(1) + prefix + EXAMPLE_ROOTFS, text)
            path.write_text(text)
    if rootfs:
        build = dest / "rootfs/BUILD"
        build.write_text(
            build.read_text().replace(f'repository = "{EXAMPLE_ROOTFS}"', f'repository = "{prefix}{EXAMPLE_ROOTFS}"')
        )
    if not srcs_glob:
        # Without its srcs glob, python-app's context is what its COPY reads (the same files): a context
        # of files without their directories' entries (what a glob of files gives) failed BuildKit builds
        # when the benchmark was written ("no directory 'app' before it in the tar"; docs/benchmarks.md).
        python_app = dest / "apps/python-app/BUILD"
        python_app.write_text(python_app.read_text().replace('    srcs = glob(["app/**"]),\n', ""))
    for rel in ("base/company-base/Dockerfile", "apps/static-hello/Dockerfile"):
        path = dest / rel
        lines = path.read_text().splitlines(keepends=True)
        first_from = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
        lines.insert(first_from + 1, f"ENV BENCH_NONCE={nonce}\n")
        path.write_text("".join(lines))


def link_or_copy(src: str, dst: str) -> str:
    """A hard link to ``src`` at ``dst``, or a copy across file systems (``shutil.copytree``'s copy_function)."""
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)
    return dst
