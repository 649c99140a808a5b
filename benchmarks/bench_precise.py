"""Precise inputs: what an edit to a file no Dockerfile reads costs, against whole-context semantics.

A generated 50-image nested family (5 roots of 10 images each: image j of a root builds FROM image
(j-1)//2, and its context directory lies inside its parent's, buildpack-deps style), every image on
the busybox base of ``bench_build`` with ``COPY data.txt conf/`` of its own few files and a ``RUN``
step; each context also holds files no instruction reads (``NOTES.txt``, ``README.md``) and, being
nested, its children's directories. Two variants, each with its own repositories, built once with
``orchestrator build //...``:

- precise: the family as described, where a context's inputs are what its Dockerfile reads;
- whole (the baseline): the same Dockerfiles ending with ``COPY . /ctx/``, so every file of the
  context is read: the cost of ``srcs``-less targets before precise inputs (and of plain Docker).

Then, per round, ``NOTES.txt`` is edited in 10 contexts (2 per root: images 1 and 5 of each) and
both variants are rebuilt, each timed as a whole process and counted with its ``--report``. The goal
is 0 images rebuilt for the precise variant. The baseline rebuilds every image whose context holds
an edited file (the edited image and, as contexts nest, its ancestors) and their descendants:
printed as "expected". The variants alternate which goes first, round by round. The run's images
are removed at the end; the base ``bench-busybox:latest`` is kept.

    .venv/bin/python -m benchmarks.bench_precise [--roots 5] [--per-root 10] [--repeat 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bench_build import BASE_IMAGE, build_base, docker, remove_images, repository_images, revision
from benchmarks.common import ORCHESTRATOR, ROOT, machine, median_of, run_timed, table

TOUCHED = (1, 5)  # the images of each root whose NOTES.txt is edited


def parent_of(j: int) -> int | None:
    return None if j == 0 else (j - 1) // 2


@dataclass
class Family:
    """One variant of the nested family: a workspace whose Dockerfiles name the variant's repositories."""

    variant: str  # "precise" or "whole"
    root: Path
    prefix: str
    roots: int
    per_root: int
    jobs: int
    image_ids: set[str] = field(default_factory=set)

    @property
    def images(self) -> int:
        return self.roots * self.per_root

    def name(self, r: int, j: int) -> str:
        return f"r{r}n{j:02d}"

    def repo(self, r: int, j: int) -> str:
        return f"{self.prefix}-{self.name(r, j)}"

    def context(self, r: int, j: int) -> Path:
        parent = parent_of(j)
        if parent is None:
            return self.root / "images" / f"r{r}"
        return self.context(r, parent) / f"n{j:02d}"

    def generate(self) -> None:
        self.root.mkdir(parents=True)
        (self.root / "WORKSPACE").write_text('workspace(name = "bench")\n')
        for r in range(self.roots):
            for j in range(self.per_root):
                ctx = self.context(r, j)
                (ctx / "conf").mkdir(parents=True)
                name, parent = self.name(r, j), parent_of(j)
                (ctx / "BUILD").write_text(f'image(name = "{name}", repository = "{self.repo(r, j)}")\n')
                lines = [f"FROM {BASE_IMAGE}\n" if parent is None else f"FROM {self.repo(r, parent)}:latest\n"]
                lines += [f"COPY data.txt conf/ /img/{name}/\n", f"RUN cat /img/{name}/data.txt > /x-{name}\n"]
                if self.variant == "whole":
                    lines.append(f"COPY . /ctx/{name}/\n")
                (ctx / "Dockerfile").write_text("".join(lines))
                (ctx / "data.txt").write_text(f"{self.prefix} {name}\n")
                (ctx / "conf" / "app.conf").write_text(f"name={name}\n")
                (ctx / "README.md").write_text(f"# {name}\nNot read by the Dockerfile.\n")
                self.touch(r, j, "v0")

    def touch(self, r: int, j: int, version: str) -> None:
        (self.context(r, j) / "NOTES.txt").write_text(f"notes on {self.name(r, j)}: {version}\n")

    def expected_after_touch(self) -> int:
        """Images a touch of TOUCHED rebuilds: precise none; whole, those whose context holds an edit, and below."""
        if self.variant == "precise":
            return 0
        changed: set[int] = set()
        for j in TOUCHED:
            node: int | None = j
            while node is not None:  # the edited context and every context it lies in
                changed.add(node)
                node = parent_of(node)
        rebuilt = {j for j in range(self.per_root) if any(self._below(j, c) for c in changed)}
        return len(rebuilt) * self.roots

    def _below(self, j: int, ancestor: int) -> bool:
        node: int | None = j
        while node is not None:
            if node == ancestor:
                return True
            node = parent_of(node)
        return False

    def build(self) -> tuple[float, int]:
        """Wall time and the number of images built of one ``orchestrator build //...``."""
        report = self.root.with_name(self.prefix + "-report.json")
        command = [
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
            str(report),
        ]
        elapsed = run_timed(command)
        nodes = json.loads(report.read_text())["nodes"]
        if len(nodes) != self.images:
            raise SystemExit(f"{self.variant}: the report has {len(nodes)} nodes, expected {self.images}")
        self.image_ids |= repository_images(self.prefix)
        return elapsed, sum(1 for n in nodes if n["status"] == "built")

    def check(self, r: int, j: int, version: str) -> None:
        """The whole variant's image holds the edited notes (its rebuild was real)."""
        out = docker("run", "--rm", f"{self.repo(r, j)}:latest", "cat", f"/ctx/{self.name(r, j)}/NOTES.txt")
        if version not in out:
            raise SystemExit(f"{self.repo(r, j)}:latest has notes {out!r}, expected version {version}")


@dataclass
class Measured:
    cold: list[tuple[float, int]] = field(default_factory=list)
    touched: list[tuple[float, int]] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--roots", type=int, default=5, help="independent roots of the family")
    parser.add_argument("--per-root", type=int, default=10, help="images per root (a nested binary tree)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of edit-and-rebuild")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="orchestrator build --jobs")
    args = parser.parse_args()
    if args.per_root <= max(TOUCHED):
        raise SystemExit(f"--per-root must be above {max(TOUCHED)}")

    compileall.compile_dir(str(ROOT / "orchestrator"), quiet=1)  # as installed (see bench_hash)
    run_id = f"pr-{uuid.uuid4().hex[:8]}"
    measured_at = revision()
    scratch = Path(tempfile.mkdtemp(prefix="bench-precise-"))
    families = [
        Family(variant, scratch / f"{variant}-{run_id}", f"{variant}-{run_id}", args.roots, args.per_root, args.jobs)
        for variant in ("precise", "whole")
    ]
    results = {f.variant: Measured() for f in families}
    firsts: list[str] = []
    try:
        build_base(scratch)
        for family in families:
            family.generate()
            results[family.variant].cold.append(family.build())
        for round_ in range(args.repeat):
            version = f"edit-{round_ + 1}"
            for family in families:
                for r in range(args.roots):
                    for j in TOUCHED:
                        family.touch(r, j, version)
            order = families if round_ % 2 == 0 else families[::-1]
            firsts.append(order[0].variant[0])
            for family in order:
                results[family.variant].touched.append(family.build())
            families[1].check(0, TOUCHED[0], version)
    finally:
        started = time.perf_counter()
        remove_images(set().union(*(f.image_ids for f in families)))
        print(f"removed the run's images in {time.perf_counter() - started:.0f}s")
        shutil.rmtree(scratch, ignore_errors=True)

    now = revision()
    changed = "" if now == measured_at else f" (the working tree changed during the run: now {now})"
    images = families[0].images
    touched = args.roots * len(TOUCHED)
    print(f"\nrun {run_id} at {measured_at}{changed}; {machine()}, orchestrator --jobs {args.jobs}")
    print(f"{images} images ({args.roots} nested roots of {args.per_root}); NOTES.txt edited in {touched} contexts")
    print(f"rounds (first): {''.join(firsts)} (p = precise ran first, w = whole)\n")
    rows = [["variant", "cold build", "after the edit: rebuilt (expected)", "median time", "times"]]
    for family in families:
        m = results[family.variant]
        cold_time, cold_built = m.cold[0]
        built = sorted({b for _, b in m.touched})
        rows.append(
            [
                family.variant + (" (goal: 0 rebuilt)" if family.variant == "precise" else " (COPY . at the end)"),
                f"{cold_time:.2f} s ({cold_built} built)",
                f"{'/'.join(str(b) for b in built)} ({family.expected_after_touch()})",
                f"{median_of([t for t, _ in m.touched]):.2f} s",
                " ".join(f"{t:.2f}" for t, _ in m.touched),
            ]
        )
    print(table(rows))
    precise, whole = results["precise"], results["whole"]
    ratios = [w / p for (p, _), (w, _) in zip(precise.touched, whole.touched, strict=True)]
    met = all(b == 0 for _, b in precise.touched)
    print(f"\nafter the edit, whole / precise time (median of per-round ratios): {median_of(ratios):.2f}x")
    print(f"precise rebuilt {'nothing' if met else 'something'}: goal {'met' if met else '**not met**'}")


if __name__ == "__main__":
    main()
