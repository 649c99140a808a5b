"""Step-3 benchmark: a second machine brought up to date through the registry cache.

One busybox family of N images (50 by default; the tree of ``bench_build``: each image FROM its
parent, every 7th also COPYs --from an earlier one) is built once on "machine A" with
``--registry``, which pushes every image to a real registry (Debian's docker-registry on
127.0.0.1, started here). Then, round by round, "machine B" (a cache directory of its own, and
the engine with every image of the family removed, registry-named tags and layers too) is timed:

- from nothing: ``build //...`` without the registry, N images built (the baseline);
- up to date: ``build //... --registry R``: the same commit, nothing built, nothing pulled;
- up to date, images local: ``--registry R --load``: nothing built, N images pulled;
- one leaf changed: the leaf edited, ``--registry R``: one image built, its parents pulled.

The first three alternate their order round by round. Every run is checked with its ``--report``
(how many images it built and pulled), and the changed leaf with ``docker run``. The family's
images are removed at the end; the base ``bench-busybox:latest`` is kept.

    .venv/bin/python -m benchmarks.bench_registry [--images 50] [--repeat 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_build import Family, build_base, diamond_of, docker, revision
from benchmarks.common import ORCHESTRATOR, ROOT, machine, median_of, run_timed, table
from tests.registry_server import running_registry


class Machine:
    """The orchestrator's family, run as one machine or another (a cache directory per machine)."""

    def __init__(self, family: Family, registry: str) -> None:
        self.family = family
        self.registry = registry
        self.runs = 0

    def build(self, *extra: str, expect_built: int, expect_pulled: int, machine_name: str) -> float:
        self.runs += 1
        cache = self.family.root.with_name(f"{self.family.prefix}-cache-{machine_name}-{self.runs}")
        report = self.family.root / "report.json"
        argv = [
            *ORCHESTRATOR,
            "--workspace",
            str(self.family.root),
            "--cache-dir",
            str(cache),
            "build",
            "//...",
            "--jobs",
            str(self.family.jobs),
            "--report",
            str(report),
            *extra,
        ]
        elapsed = run_timed(argv)
        nodes = json.loads(report.read_text())["nodes"]
        built = sum(1 for n in nodes if n["status"] == "built")
        pulled = sum(1 for n in nodes if n["status"] == "pulled")
        if (built, pulled) != (expect_built, expect_pulled):
            wanted = f"expected {expect_built}, {expect_pulled}"
            raise SystemExit(f"{' '.join(extra)}: built {built}, pulled {pulled}; {wanted}")
        shutil.rmtree(cache, ignore_errors=True)
        return elapsed

    def forget(self) -> None:
        """A new machine: no image of the family in the engine (content, human and registry tags)."""
        out = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
        tags = [line for line in out.splitlines() if self.family.prefix in line]
        for start in range(0, len(tags), 200):
            subprocess.run(["docker", "rmi", "-f", *tags[start : start + 200]], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    compileall.compile_dir(str(ROOT / "orchestrator"), quiet=1)
    measured = revision()
    run_id = f"rg-{uuid.uuid4().hex[:8]}"
    scratch = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    n = args.images
    timings: dict[str, list[float]] = {"scratch": [], "remote": [], "load": [], "leaf": []}
    firsts: list[str] = []
    try:
        build_base(scratch)
        with running_registry(scratch / "registry") as registry:
            family = Family("orchestrator", scratch / run_id, run_id, n, args.jobs)
            family.generate()
            box = Machine(family, registry)
            started = time.perf_counter()
            box.build("--registry", registry, expect_built=n, expect_pulled=0, machine_name="a")
            print(f"machine A built and pushed {n} images in {time.perf_counter() - started:.1f}s")

            with_registry = ("--registry", registry)
            runs: dict[str, Callable[[], float]] = {
                "scratch": lambda: box.build(expect_built=n, expect_pulled=0, machine_name="b"),
                "remote": lambda: box.build(*with_registry, expect_built=0, expect_pulled=0, machine_name="b"),
                "load": lambda: box.build(*with_registry, "--load", expect_built=0, expect_pulled=n, machine_name="b"),
            }
            for r in range(args.repeat):
                order = list(runs) if r % 2 == 0 else list(reversed(runs))
                firsts.append(order[0])
                for name in order:
                    box.forget()
                    timings[name].append(runs[name]())
                    print(f"round {r + 1}: {name} {timings[name][-1]:.2f}s")
            leaf = n - 1
            parents = 1 if diamond_of(leaf) is None else 2  # FROM its parent, and maybe COPY --from another
            for r in range(args.repeat):
                family.edit(leaf, f"leaf-{r + 1}")
                box.forget()
                timings["leaf"].append(
                    box.build(*with_registry, expect_built=1, expect_pulled=parents, machine_name="b")
                )
                family.check(leaf, f"leaf-{r + 1}")
            box.forget()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    baseline = timings["scratch"]
    rows = [["machine B", "median", "speed-up against building from nothing (same round)"]]
    titles = {
        "scratch": f"from nothing, no registry ({n} built)",
        "remote": "up to date from the registry (0 built, 0 pulled)",
        "load": f"up to date, --load ({n} pulled)",
        "leaf": "one leaf changed (1 built, its parents pulled)",
    }
    for name, title in titles.items():
        times = timings[name]
        if name == "leaf":
            ratio = median_of(baseline) / median_of(times)
            note = f"{ratio:.1f}x (against the median from nothing)"
        else:
            ratio = median_of([b / t for b, t in zip(baseline, times, strict=True)])
            note = "1.0x" if name == "scratch" else f"{ratio:.1f}x"
        rows.append([title, f"{median_of(times):.2f} s", note])
    print(f"\nrun {run_id} at {measured}, {machine()}, {n} images, --jobs {args.jobs}, rounds {args.repeat}")
    print(f"first in each round: {', '.join(firsts)}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
