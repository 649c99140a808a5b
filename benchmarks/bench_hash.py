"""Step-1 benchmark: loading, graph queries and keys on a generated family of 1,000 images.

The workspace is a tree of images with diamonds (every 7th image also COPYs --from an earlier
image) holding 50,000 context files. Each command is timed as a whole process, the way a user runs
it, and compared with the floor: a bare Python process that walks the same tree and lstat()s every
entry. Also: hashing throughput on one 1 GB file.

    .venv/bin/python -m benchmarks.bench_hash [--images 1000] [--files 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import ORCHESTRATOR, ROOT, machine, median_of, run_timed, table

FLOOR = (
    "import os, sys\n"
    "n = 0\n"
    "for d, dirs, files in os.walk(sys.argv[1]):\n"
    "    for name in dirs + files:\n"
    "        os.lstat(os.path.join(d, name)); n += 1\n"
)


COMMANDS = {
    "floor": ("bare Python stat walk (the floor)", ""),
    "cold": ("hash //... (cold cache)", ""),
    "warm": ("hash //... (warm cache)", "<= 2x"),
    "rdeps": ("query rdeps <root>", "<= 2x"),
    "order": ("query buildorder //...", ""),
}


def generate(root: Path, images: int, files: int) -> None:
    per_image = max(1, files // images)
    (root / "WORKSPACE").write_text('workspace(name = "bench", platforms = ["linux/amd64"])\n')
    for i in range(images):
        pkg = root / "images" / f"group{i % 20:02d}" / f"img{i:04d}"
        (pkg / "src").mkdir(parents=True)
        (pkg / "BUILD").write_text(f'image(name = "img{i:04d}")\n')
        lines = ["FROM debian:bookworm\n"] if i == 0 else [f"FROM img{(i - 1) // 2:04d}:latest\n"]
        if i > 2 and i % 7 == 0:
            lines.append(f"COPY --from=img{i // 3:04d} /etc/hostname /diamond\n")
        lines.append("COPY src/ /src/\n")
        (pkg / "Dockerfile").write_text("".join(lines))
        for f in range(per_image - 2):
            (pkg / "src" / f"file{f:03d}.txt").write_text(f"image {i} file {f}\n" * 4)


def hash_throughput(path: Path, size: int) -> float:
    from orchestrator.keys.digests import file_hasher

    chunk = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for _ in range(size >> 20):
            handle.write(chunk)
    hash_file = file_hasher("xxh3")
    hash_file(str(path))  # warm the page cache
    started = time.perf_counter()
    hash_file(str(path))
    return size / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big-file-mb", type=int, default=1024)
    args = parser.parse_args()

    # Byte-compile the package first: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every
    # run would otherwise compile it from source, which is not what an installed tool does.
    compileall.compile_dir(str(ROOT / "orchestrator"), quiet=1)
    scratch = Path(tempfile.mkdtemp(prefix="bench-hash-"))
    try:
        ws, cache = scratch / "ws", scratch / "cache"
        ws.mkdir()
        started = time.perf_counter()
        generate(ws, args.images, args.files)
        entries = sum(len(d) + len(f) for _, d, f in os.walk(ws))
        print(f"generated {args.images} images, {entries} entries in {time.perf_counter() - started:.1f}s")

        def orch(*argv: str) -> list[str]:
            return [*ORCHESTRATOR, "--workspace", str(ws), "--cache-dir", str(cache), *argv]

        # Each round runs every command once, so all of them see the same machine conditions
        # (this is a shared VM: absolute times drift between minutes, ratios within a round do not).
        run_timed(["python3", "-c", FLOOR, str(ws)])  # warm the page cache and dentries
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.repeat):
            times["floor"].append(run_timed(["python3", "-c", FLOOR, str(ws)]))
            shutil.rmtree(cache, ignore_errors=True)
            times["cold"].append(run_timed(orch("hash", "//...")))
            times["warm"].append(run_timed(orch("hash", "//...")))
            times["rdeps"].append(run_timed(orch("query", "rdeps", "//images/group00/img0000:img0000")))
            times["order"].append(run_timed(orch("query", "buildorder", "//...")))
        gbps = hash_throughput(scratch / "big.bin", args.big_file_mb << 20)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    floor = median_of(times["floor"])
    rows = [["command", "median wall time", "ratio to floor (median of per-round ratios)", "goal"]]
    for name, (title, goal) in COMMANDS.items():
        ratios = [t / f for t, f in zip(times[name], times["floor"], strict=True)]
        rows.append([title, f"{median_of(times[name]):.3f} s", f"{median_of(ratios):.2f}x", goal])
    print(f"\n{args.images} images, {entries} entries, {machine()}, {args.repeat} rounds\n")
    print(f"floor: {floor:.3f} s")
    print(table(rows))
    print(f"\nhashing one {args.big_file_mb} MB file (xxh3-128, page cache warm): {gbps:.2f} GB/s (goal >= 1 GB/s)")


if __name__ == "__main__":
    main()
