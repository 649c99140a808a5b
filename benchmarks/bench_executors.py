"""Step-10 benchmark: `orchestrator build --executor buildkit` against `--executor classic`.

Two fixtures, each built by the orchestrator as a whole process (`build //... --executor X`), every
run checked with its `--report` (what it built, and that the executor asked for built it):

(a) `stages`: one image of four stages: three independent stages that each `COPY round.txt` and
    `RUN sleep 3`, and a final stage that COPYs --from all three. round.txt changes before every
    build (a new key, and a layer-cache miss in both builders), so every round is a real build of
    the whole image. Each executor has a workspace and repository of its own; the executors
    alternate which goes first, round by round. The classic builder builds stages one after the
    other (about 9 s of sleeping); BuildKit builds them at once (about 3 s). After each, the same
    context is built by a plain `docker build -q` (DOCKER_BUILDKIT=1 or 0, /usr/bin/docker when it
    exists, as the orchestrator's probe finds here): the floor, what the builders themselves
    take, without the orchestrator's process, probe and checks.

(b) `examples`: a copy of BUILD.examples (never the real tree) per executor, with
    `platforms = ["linux/amd64"]` (the arm64 half would run apt under QEMU: it would only make
    a long run longer), its repositories renamed `bx-<run>-<executor>-*` (so neither copy moves the
    real family's human tags) and `ENV BENCH_NONCE=<unique>` after the FROM of its two images built
    on debian:bookworm (company-base, static-hello's builder stage): so every image but the
    debootstrap rootfs (shared, cached: its tarball is reused from cache/rootfs/) is built cold,
    without either builder's layer cache (apt downloads included: the network is in the numbers).
    Then one leaf changed: a byte appended to apps/node-app/src/server.js, which rebuilds node-app
    only. One more change to the copy: python-app's `srcs = glob(["app/**"])` is dropped (its
    context is then what its COPY reads, the same files), since a globbed context failed BuildKit
    builds when this was written.

The images of the run are removed at the end; `bench-busybox:latest` is kept for reuse (as in
bench_build). No timing is asserted: the ratios are printed.

    .venv/bin/python -m benchmarks.bench_executors [--rounds 5] [--examples-rounds 1] [--skip-examples]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_build import BASE_IMAGE, build_base, revision
from benchmarks.common import (
    EXAMPLE_IMAGES,
    ORCHESTRATOR,
    ROOT,
    examples_copy,
    link_or_copy,
    machine,
    median_of,
    run_timed,
    table,
)
from orchestrator.engine.buildkit_probe import SYSTEM_CLI

EXECUTORS = ("buildkit", "classic")
LEAF = "apps/node-app/src/server.js"

STAGES_DOCKERFILE = f"""FROM {BASE_IMAGE} AS one
COPY round.txt /round
RUN sleep 3 && cat /round > /one

FROM {BASE_IMAGE} AS two
COPY round.txt /round
RUN sleep 3 && cat /round > /two

FROM {BASE_IMAGE} AS three
COPY round.txt /round
RUN sleep 3 && cat /round > /three

FROM {BASE_IMAGE}
COPY --from=one /one /one
COPY --from=two /two /two
COPY --from=three /three /three
"""


def orchestrate(workspace: Path, cache: Path, executor: str, report: Path) -> tuple[float, dict[str, Any]]:
    """Time one `build //...` with ``executor``; its report, checked to name that executor."""
    argv = [
        *ORCHESTRATOR,
        "--workspace",
        str(workspace),
        "--cache-dir",
        str(cache),
        "build",
        "//...",
        "--executor",
        executor,
        "--report",
        str(report),
    ]
    elapsed = run_timed(argv)
    data = json.loads(report.read_text())
    if data["executor"]["used"] != executor:
        raise SystemExit(f"{workspace}: asked for {executor}, the report says {data['executor']}")
    for node in data["nodes"]:
        if node["status"] == "built" and node["executor"] != executor:
            raise SystemExit(f"{node['label']} was built by {node['executor']}, not {executor}")
    return elapsed, data


def built(report: dict[str, Any]) -> list[str]:
    return sorted(f"{n['label']} {n['platform']}" for n in report["nodes"] if n["status"] == "built")


def remove_repositories(prefix: str) -> None:
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=True
    )
    tags = [tag for tag in listed.stdout.split() if tag.startswith(prefix)]
    if tags:
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, check=False)


# ---- (a) three parallel stages ------------------------------------------------------------------


def bench_stages(scratch: Path, run_id: str, rounds: int) -> list[list[str]]:
    workspaces = {}
    for executor in EXECUTORS:
        ws = scratch / f"stages-{executor}"
        (ws / "app").mkdir(parents=True)
        (ws / "WORKSPACE").write_text('workspace(name = "stages")\n')
        (ws / "app/BUILD").write_text(f'image(name = "app", repository = "bx-{run_id}-{executor}-stages")\n')
        (ws / "app/Dockerfile").write_text(STAGES_DOCKERFILE)
        workspaces[executor] = ws
    times: dict[str, list[float]] = {executor: [] for executor in EXECUTORS}
    plain: dict[str, list[float]] = {executor: [] for executor in EXECUTORS}
    for n in range(rounds):
        order = EXECUTORS if n % 2 == 0 else EXECUTORS[::-1]
        for executor in order:
            ws = workspaces[executor]
            (ws / "app/round.txt").write_text(f"{run_id} {executor} round {n}\n")
            elapsed, report = orchestrate(ws, scratch / f"stages-{executor}-cache", executor, scratch / "r.json")
            if built(report) != ["//app:app linux/amd64"]:
                raise SystemExit(f"stages, {executor}, round {n}: built {built(report)}")
            times[executor].append(elapsed)
            plain[executor].append(docker_build(ws / "app", f"bx-{run_id}-plain-{executor}", executor, n))
            print(f"  stages round {n + 1} {executor}: {elapsed:.2f}s (plain docker build {plain[executor][-1]:.2f}s)")
    medians = {executor: median_of(times[executor]) for executor in EXECUTORS}
    floors = {executor: median_of(plain[executor]) for executor in EXECUTORS}
    return [
        ["3 stages of `RUN sleep 3` + a final COPY --from each", "classic", "buildkit", "speed-up"],
        [
            f"median of {rounds} (each round a new key)",
            f"{medians['classic']:.2f} s",
            f"{medians['buildkit']:.2f} s",
            f"**{medians['classic'] / medians['buildkit']:.2f}x**",
        ],
        [
            "all rounds",
            " / ".join(f"{t:.1f}" for t in times["classic"]),
            " / ".join(f"{t:.1f}" for t in times["buildkit"]),
            "",
        ],
        [
            "plain `docker build -q` of the same context, median",
            f"{floors['classic']:.2f} s",
            f"{floors['buildkit']:.2f} s",
            f"{floors['classic'] / floors['buildkit']:.2f}x",
        ],
    ]


def docker_build(context: Path, repository: str, executor: str, n: int) -> float:
    """The same build without the orchestrator: ``docker build`` with DOCKER_BUILDKIT=1 or 0 (a new round.txt)."""
    (context / "round.txt").write_text(f"{repository} plain round {n}\n")
    cli = SYSTEM_CLI if Path(SYSTEM_CLI).exists() else "docker"
    env = {**os.environ, "DOCKER_BUILDKIT": "1" if executor == "buildkit" else "0"}
    return run_timed([cli, "build", "-q", "-t", f"{repository}:latest", str(context)], env=env)


# ---- (b) BUILD.examples -------------------------------------------------------------------------


def bench_examples(scratch: Path, run_id: str, rounds: int) -> list[list[str]]:
    times: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], int] = {}
    for n in range(rounds):
        order = EXECUTORS if n % 2 == 0 else EXECUTORS[::-1]
        for executor in order:
            prefix = f"bx-{run_id}-{executor}-"
            ws = scratch / f"examples-{executor}-{n}"
            cache = scratch / f"examples-{executor}-{n}-cache"
            examples_copy(ws, prefix, f"{run_id}-{executor}-{n}")
            # The debootstrap tarballs of the real cache: the rootfs is imported, not debootstrapped again.
            shutil.copytree(ROOT / "cache/rootfs", cache / "rootfs", copy_function=link_or_copy)
            for scenario in ("cold", "leaf"):
                if scenario == "leaf":
                    with (ws / LEAF).open("a") as leaf:
                        leaf.write("\n")
                elapsed, report = orchestrate(ws, cache, executor, scratch / "r.json")
                got = built(report)
                want = 1 if scenario == "leaf" else len(EXAMPLE_IMAGES)
                if len(got) != want or any("rootfs" in name for name in got):
                    raise SystemExit(f"examples {scenario}, {executor}: built {got}")
                times.setdefault((scenario, executor), []).append(elapsed)
                counts[(scenario, executor)] = len(got)
                print(f"  examples round {n + 1} {scenario} {executor}: {elapsed:.1f}s ({len(got)} built)")
    rows = [["BUILD.examples, linux/amd64", "classic", "buildkit", "speed-up"]]
    for scenario, title in (("cold", "cold (all but the rootfs)"), ("leaf", "one leaf changed (node-app)")):
        classic, buildkit = (median_of(times[(scenario, e)]) for e in ("classic", "buildkit"))
        rows.append(
            [
                f"{title}: {counts[(scenario, 'classic')]} images",
                f"{classic:.1f} s",
                f"{buildkit:.1f} s",
                f"**{classic / buildkit:.2f}x**",
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three-stage fixture")
    parser.add_argument("--examples-rounds", type=int, default=1, help="rounds of BUILD.examples (cold, then leaf)")
    parser.add_argument("--skip-examples", action="store_true", help="the three-stage fixture only")
    args = parser.parse_args(argv)
    run_id = uuid.uuid4().hex[:6]
    measured = revision()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
        scratch = Path(tmp)
        build_base(scratch)
        try:
            print("(a) three parallel stages")
            stages = bench_stages(scratch, run_id, args.rounds)
            examples = None
            if not args.skip_examples:
                print("(b) BUILD.examples")
                examples = bench_examples(scratch, run_id, args.examples_rounds)
        finally:
            remove_repositories(f"bx-{run_id}-")
    print(f"\nrun bx-{run_id} at {measured}, {machine()}, {time.perf_counter() - started:.0f}s in all\n")
    print(table(stages))
    if examples is not None:
        print()
        print(table(examples))


if __name__ == "__main__":
    main()
