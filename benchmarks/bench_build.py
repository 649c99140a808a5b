"""Step-2 benchmark: `orchestrator build` against a `docker build` script, on busybox families.

For each size N (50 and 200 images by default) the same tree of N images (each builds FROM its
parent, every 7th also COPYs --from an earlier one: diamonds) is generated twice, once per tool,
with its own repositories (`script-bb-<id>-...` and `orch-bb-<id>-...`):

- the script is what a user would otherwise write: one `docker build -q -t <repo>:latest <dir>` line
  per image in topological order, on Docker's layer cache, classic builder (`DOCKER_BUILDKIT=0`, the
  builder the orchestrator drives too), run as `bash build.sh`;
- the orchestrator is `orchestrator --workspace WS --cache-dir CACHE build //... --jobs J`.

Scenarios, each timed for both tools as whole processes: cold (nothing of that run built yet; only
the busybox base exists), no-op (run again at once), one leaf changed (its data.txt edited), root
changed (image 0's data.txt edited: everything rebuilds). Every image has two cheap but real steps
(`COPY data.txt`, `RUN cat ... > /x`); the data files name the tool's repository prefix, so no
layer of one tool can come from the other's builds (checked after the cold builds: the two tools'
images share no ancestor but the base). Within a scenario the tools alternate which goes first,
round by round (and the first round alternates between scenarios). Cold and root-changed are full
builds of N images and run `--full-repeat` times (default 1; each cold round uses fresh
repositories); no-op and leaf changed run `--repeat` times (default 3). Every orchestrator run is
checked with its `--report` (how many images it built) and every change is checked in both tools'
images (`docker run ... cat /x`). The run's images are removed at the end; the base
`bench-busybox:latest` (built from the host's static `/bin/busybox`) is kept for reuse.

    .venv/bin/python -m benchmarks.bench_build [--sizes 50,200] [--repeat 3] [--full-repeat 1] [--jobs 2]
"""

from __future__ import annotations

import argparse
import compileall
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import ORCHESTRATOR, ROOT, machine, median_of, run_timed, table

BASE_IMAGE = "bench-busybox:latest"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "ls", "true", "false", "test", "mkdir", "sleep")
SCRIPT_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}

SCENARIOS = {
    "cold": "cold build",
    "noop": "no-op rebuild",
    "leaf": "one leaf changed",
    "root": "root changed",
}


def goal(scenario: str, images: int) -> float | None:
    """The speed-up (script time / orchestrator time) the issue asks for; goals are stated from 50 images."""
    if images < 50:
        return None
    if scenario == "noop":
        return 20.0 if images >= 200 else 5.0
    if scenario == "leaf":
        return 3.0
    if scenario == "cold":
        return 1 / 0.8  # no slower than the script; building in parallel, 0.8x its time
    return None


def docker(*argv: str) -> str:
    done = subprocess.run(["docker", *argv], capture_output=True, text=True, check=False, env=SCRIPT_ENV)
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(argv[:3])} ... failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def busybox_rootfs() -> bytes:
    """The host's static busybox, its applet links and /tmp: a root file system, as tar bytes."""
    if not BUSYBOX.is_file():
        raise SystemExit(f"{BUSYBOX} is missing: apt-get install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "tmp"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return buf.getvalue()


def build_base(scratch: Path) -> str:
    """`bench-busybox:latest`: the host's static busybox and its applet links, one layer (kept afterwards)."""
    if not BUSYBOX.is_file():
        raise SystemExit(f"{BUSYBOX} is missing: apt-get install busybox-static")
    ctx = scratch / "busybox"
    ctx.mkdir()
    (ctx / "rootfs.tar").write_bytes(busybox_rootfs())
    (ctx / "Dockerfile").write_text("FROM scratch\nADD rootfs.tar /\n")
    docker("build", "-q", "-t", BASE_IMAGE, str(ctx))  # the same tar every time: a cache hit after the first
    return docker("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE).strip()


def revision() -> str:
    """The commit measured (``-dirty`` when tracked files differ from it)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def parent_of(i: int) -> int:
    return (i - 1) // 2


def diamond_of(i: int) -> int | None:
    return i // 3 if i > 2 and i % 7 == 0 else None


def data_text(prefix: str, i: int, version: str) -> str:
    return f"{prefix} image {i} {version}\n"


@dataclass
class Family:
    """One tool's copy of the tree: a workspace whose Dockerfiles name the tool's own repositories."""

    tool: str  # "script" or "orchestrator"
    root: Path
    prefix: str
    images: int
    jobs: int
    image_ids: set[str] = field(default_factory=set)  # every image ID this family ever had, for clean-up

    def repo(self, i: int) -> str:
        return f"{self.prefix}-img{i:04d}"

    def package(self, i: int) -> Path:
        return self.root / "images" / f"img{i:04d}"

    def generate(self) -> None:
        self.root.mkdir(parents=True)
        (self.root / "WORKSPACE").write_text('workspace(name = "bench")\n')
        for i in range(self.images):
            pkg = self.package(i)
            pkg.mkdir(parents=True)
            (pkg / "BUILD").write_text(f'image(name = "img{i:04d}", repository = "{self.repo(i)}")\n')
            lines = [f"FROM {BASE_IMAGE}\n" if i == 0 else f"FROM {self.repo(parent_of(i))}:latest\n"]
            k = diamond_of(i)
            if k is not None:
                lines.append(f"COPY --from={self.repo(k)}:latest /x /diamond\n")
            lines += [f"COPY data.txt /data/{i}.txt\n", f"RUN cat /data/{i}.txt > /x\n"]
            (pkg / "Dockerfile").write_text("".join(lines))
            self.edit(i, "v0")
        # Image i depends only on images < i, so index order is a topological order.
        script = [
            "#!/usr/bin/env bash",
            "# What a user would otherwise write: docker build per image, parents first, on the layer cache.",
            "set -euo pipefail",
            'cd "$(dirname "$0")"',
            "export DOCKER_BUILDKIT=0",
            *(f"docker build -q -t {self.repo(i)}:latest images/img{i:04d}" for i in range(self.images)),
        ]
        (self.root / "build.sh").write_text("\n".join(script) + "\n")

    def edit(self, i: int, version: str) -> None:
        (self.package(i) / "data.txt").write_text(data_text(self.prefix, i, version))

    def command(self) -> list[str]:
        if self.tool == "script":
            return ["bash", str(self.root / "build.sh")]
        return [
            *ORCHESTRATOR,
            "--workspace",
            str(self.root),
            "--cache-dir",
            str(self.root.with_name(self.prefix + "-cache")),
            "build",
            "//...",
            "--jobs",
            str(self.jobs),
            "--report",
            str(self.root / "report.json"),
        ]

    def run(self, expect_built: int) -> float:
        elapsed = run_timed(self.command(), env=SCRIPT_ENV if self.tool == "script" else None)
        if self.tool == "orchestrator":
            nodes = json.loads((self.root / "report.json").read_text())["nodes"]
            built = sum(1 for n in nodes if n["status"] == "built")
            if built != expect_built or len(nodes) != self.images:
                raise SystemExit(f"orchestrator built {built} of {len(nodes)} images, expected {expect_built}")
        self.image_ids |= repository_images(self.prefix)
        return elapsed

    def check(self, i: int, version: str) -> None:
        """The image the tool tagged for ``i`` holds the edited data."""
        out = docker("run", "--rm", f"{self.repo(i)}:latest", "cat", "/x")
        if out != data_text(self.prefix, i, version):
            raise SystemExit(f"{self.tool}: {self.repo(i)}:latest has /x = {out!r}, expected version {version}")


def repository_images(prefix: str) -> set[str]:
    """The IDs of the images tagged in the repositories ``<prefix>-*``."""
    out = docker("image", "ls", "--no-trunc", "--format", "{{.Repository}}\t{{.ID}}")
    return {line.split("\t")[1] for line in out.splitlines() if line.startswith(prefix + "-")}


def parents_map() -> dict[str, str]:
    """Image ID -> parent image ID for every local image, intermediate ones included (classic builder)."""
    ids = docker("image", "ls", "-a", "-q", "--no-trunc").split()
    parents = {}
    for start in range(0, len(ids), 500):
        out = docker("image", "inspect", "--format", "{{.Id}} {{.Parent}}", *sorted(set(ids[start : start + 500])))
        for line in out.splitlines():
            image, _, parent = line.partition(" ")
            parents[image] = parent.strip()
    return parents


def ancestors(images: set[str], parents: dict[str, str]) -> set[str]:
    seen: set[str] = set()
    for image in images:
        while image and image not in seen:
            seen.add(image)
            image = parents.get(image, "")
    return seen


def shared_ancestors(script: Family, orch: Family, base_id: str) -> int:
    """Images (intermediate ones included) in both tools' chains, other than the base's own chain."""
    parents = parents_map()
    common = ancestors(script.image_ids, parents) & ancestors(orch.image_ids, parents)
    return len(common - ancestors({base_id}, parents))


def remove_images(image_ids: set[str]) -> None:
    """Remove the run's images, newest first (a child before its parent); untagged parents go with them."""
    remaining = set(image_ids)
    for _ in range(10):
        existing = set(docker("image", "ls", "-a", "-q", "--no-trunc").split()) & remaining
        if not existing:
            return
        out = docker("image", "inspect", "--format", "{{.Created}} {{.Id}}", *existing)
        newest_first = [line.split()[1] for line in sorted(out.splitlines(), reverse=True)]
        subprocess.run(["docker", "rmi", "-f", *newest_first], capture_output=True, check=False)
        remaining = existing
    print(f"warning: {len(remaining)} images of the run could not be removed")


@dataclass
class Timings:
    script: list[float] = field(default_factory=list)
    orch: list[float] = field(default_factory=list)
    script_first: list[bool] = field(default_factory=list)


def timed_round(timings: Timings, script: Family, orch: Family, script_first: bool, expect_built: int) -> None:
    order = (script, orch) if script_first else (orch, script)
    for family in order:
        elapsed = family.run(expect_built)
        (timings.script if family is script else timings.orch).append(elapsed)
    timings.script_first.append(script_first)


def bench_size(scratch: Path, run_id: str, images: int, args: argparse.Namespace, base_id: str) -> list[list[str]]:
    results = {name: Timings() for name in SCENARIOS}
    families: list[Family] = []
    jobs = args.jobs

    def pair(cold_round: int) -> tuple[Family, Family]:
        made = []
        for tool, short in (("script", "script"), ("orchestrator", "orch")):
            prefix = f"{short}-{run_id}-n{images}-{cold_round}"
            family = Family(tool, scratch / prefix, prefix, images, jobs)
            family.generate()
            made.append(family)
        families.extend(made)
        return made[0], made[1]

    try:
        shared = []
        for r in range(args.full_repeat):
            script, orch = pair(r)
            timed_round(results["cold"], script, orch, r % 2 == 0, images)
            shared.append(shared_ancestors(script, orch, base_id))
        for r in range(args.repeat):
            timed_round(results["noop"], script, orch, r % 2 == 1, 0)
        leaf = images - 1  # nothing depends on the last image
        for r in range(args.repeat):
            for family in (script, orch):
                family.edit(leaf, f"leaf-{r + 1}")
            timed_round(results["leaf"], script, orch, r % 2 == 0, 1)
            for family in (script, orch):
                family.check(leaf, f"leaf-{r + 1}")
        for r in range(args.full_repeat):
            for family in (script, orch):
                family.edit(0, f"root-{r + 1}")
            timed_round(results["root"], script, orch, r % 2 == 1, images)
            for family in (script, orch):
                family.check(0, f"root-{r + 1}")
    finally:
        started = time.perf_counter()
        remove_images(set().union(*(f.image_ids for f in families)))
        print(f"removed the images of {len(families)} families in {time.perf_counter() - started:.0f}s")

    print(f"\n{images} images, {machine()}, orchestrator --jobs {jobs}")
    print(f"images shared by the two tools' cold builds (base excluded), per round: {shared}")
    rows = [["scenario", "script", "orchestrator", "speed-up (script/orchestrator)", "goal", "rounds (first)"]]
    for name, title in SCENARIOS.items():
        t = results[name]
        ratios = [s / o for s, o in zip(t.script, t.orch, strict=True)]
        speedup = median_of(ratios)
        wanted = goal(name, images)
        verdict = "" if wanted is None else f">= {wanted:.2f}x: {'met' if speedup >= wanted else '**not met**'}"
        firsts = "".join("s" if first else "o" for first in t.script_first)
        rows.append(
            [
                title,
                f"{median_of(t.script):.2f} s",
                f"{median_of(t.orch):.2f} s",
                f"{speedup:.2f}x",
                verdict,
                f"{len(ratios)} ({firsts})",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50,200", help="family sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the no-op and leaf scenarios")
    parser.add_argument("--full-repeat", type=int, default=1, help="rounds of the cold and root scenarios")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="orchestrator build --jobs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    compileall.compile_dir(str(ROOT / "orchestrator"), quiet=1)  # as installed (see bench_hash)
    run_id = f"bb-{uuid.uuid4().hex[:8]}"
    measured = revision()
    scratch = Path(tempfile.mkdtemp(prefix="bench-build-"))
    tables = []
    try:
        base_id = build_base(scratch)
        for images in sizes:
            started = time.perf_counter()
            tables.append((images, bench_size(scratch, run_id, images, args, base_id)))
            print(f"{images} images: {time.perf_counter() - started:.0f}s in all")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    now = revision()
    changed = "" if now == measured else f" (the working tree changed during the run: now {now})"
    print(f"\nrun {run_id} at {measured}{changed}")
    print("rounds (first): s = the script ran first in that round, o = the orchestrator")
    for images, rows in tables:
        print(f"\n{images} images\n")
        print(table(rows))


if __name__ == "__main__":
    main()
