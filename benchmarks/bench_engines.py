"""Step-11 benchmark: one wide family built on 1, 2 and 3 engines, one job per engine, in one run.

The family: 24 images, each `FROM bench-busybox:latest` and one unique `RUN sleep 3` (the round's
nonce is in the command: every round is a cold build of all 24, in the layer cache of no engine).
The engines are private dockerds on this machine (tests/engines.py: each its own data-root,
exec-root, containerd, socket and bridge), each holding `bench-busybox:latest`, with a local
registry (Debian's docker-registry) as the registry cache every run uses (several engines need
one; the one-engine run pushes too, so the three runs do the same work). Each engine gets
`jobs = 1`: what is measured is placement across engines, not parallelism within one.

The runs alternate their order round by round (1, 2, 3 then 3, 2, 1, ...). Each is a whole
`orchestrator build` process with `--executor classic` (the same builder on every engine) and a
`--report`, checked: 24 built, and on how many engines. No timing is asserted: the ratios are printed.

    .venv/bin/python -m benchmarks.bench_engines [--rounds 1] [--images 24] [--sleep 3]

On one 2-core machine all engines share the cores, the disk and one kernel: a build that is
mostly `sleep` overlaps well; a CPU-bound family would not speed up at all. Across machines, the
registry transfers (a push after each build, a pull where a child lands elsewhere) are the cost
this does not show (here every image is a child of an image every engine already holds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from benchmarks.bench_build import BASE_IMAGE, busybox_rootfs, revision
from benchmarks.common import ORCHESTRATOR, machine, median_of, table

ENGINE_COUNTS = (1, 2, 3)


def write_family(root: Path, images: int, sleep: float, nonce: str, engines: list[str], registry: str) -> None:
    entries = ", ".join(f'{{"url": "{url}", "jobs": 1}}' for url in engines)
    root.mkdir(parents=True, exist_ok=True)
    (root / "WORKSPACE").write_text(f'workspace(registry = "{registry}", engines = [{entries}])\n')
    for i in range(images):
        package = root / f"w{i:02d}"
        package.mkdir(parents=True, exist_ok=True)
        (package / "BUILD").write_text(f'image(name = "w{i:02d}", repository = "bench-wide-{nonce}-{i:02d}")\n')
        (package / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN sleep {sleep} && echo {nonce}-{i} > /x\n")


def build(root: Path, cache: Path, report: Path) -> tuple[float, dict[str, int]]:
    """Wall time of one `orchestrator build`, and how many images each engine built (from its report)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    argv = [*ORCHESTRATOR, "--workspace", str(root), "--cache-dir", str(cache), "build", "--executor", "classic"]
    started = time.perf_counter()
    done = subprocess.run([*argv, "--report", str(report)], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    per_engine: dict[str, int] = {}
    for node in json.loads(report.read_text())["nodes"]:
        if node["status"] != "built":
            raise SystemExit(f"{node['label']} was {node['status']}, not built: the round was not cold")
        per_engine[node["engine"]] = per_engine.get(node["engine"], 0) + 1
    return elapsed, per_engine


@contextlib.contextmanager
def engines_and_registry(count: int, scratch: Path) -> Iterator[tuple[list[str], str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.engines import running_engine
    from tests.registry_server import running_registry

    rootfs = busybox_rootfs()
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(running_registry(scratch / "registry"))
        urls = []
        for _ in range(count):
            engine = stack.enter_context(running_engine())
            engine.import_rootfs(BASE_IMAGE, rootfs)
            urls.append(engine.url)
        yield urls, registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--sleep", type=float, default=3.0)
    args = parser.parse_args()
    times: dict[int, list[float]] = {n: [] for n in ENGINE_COUNTS}
    spread: dict[int, list[dict[str, int]]] = {n: [] for n in ENGINE_COUNTS}
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        scratch = Path(tmp)
        with engines_and_registry(max(ENGINE_COUNTS), scratch) as (urls, registry):
            for round_no in range(args.rounds):
                order = ENGINE_COUNTS if round_no % 2 == 0 else tuple(reversed(ENGINE_COUNTS))
                for count in order:
                    nonce = uuid.uuid4().hex[:10]
                    root = scratch / f"ws-{nonce}"
                    write_family(root, args.images, args.sleep, nonce, urls[:count], registry)
                    elapsed, per_engine = build(root, scratch / f"cache-{nonce}", scratch / f"report-{nonce}.json")
                    times[count].append(elapsed)
                    spread[count].append(per_engine)
                    print(
                        f"round {round_no + 1}: {count} engine(s) {elapsed:.1f} s, built per engine "
                        f"{sorted(per_engine.values(), reverse=True)}",
                        flush=True,
                    )
    base = median_of(times[1])
    rows = [["engines", "median wall (s)", "speed-up vs 1 engine", "images per engine (last round)"]]
    for count in ENGINE_COUNTS:
        median = median_of(times[count])
        rows.append(
            [
                str(count),
                f"{median:.1f}",
                f"{base / median:.2f}x",
                ", ".join(str(n) for n in sorted(spread[count][-1].values(), reverse=True)),
            ]
        )
    print()
    print(
        f"{args.images} images, each RUN sleep {args.sleep:g}; one job per engine; {args.rounds} round(s); "
        f"{machine()}; {revision()}"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
