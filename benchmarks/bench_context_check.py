"""Step-6 benchmark: what proving a context costs (hashing each file as the context tar is written).

Writes the context tar of a generated context twice per round, interleaved: without a check (the
baseline, what step 5 did) and with the ContextCheck that hashes every file as it is written and
compares the input digest with the key's. Prints the medians and their ratio.

    .venv/bin/python -m benchmarks.bench_context_check [--files 2000] [--mb 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, median_of, table
from orchestrator.engine.tarball import write_context_tar
from orchestrator.keys.context import context_entries
from orchestrator.keys.digests import file_hasher, hash_bytes
from orchestrator.keys.inputs import ContextCheck, digest_manifest, inputs_manifest

DOCKERFILE = "FROM scratch\nCOPY . /\n"


def _make_context(root: Path, files: int, total_mb: int) -> None:
    size = total_mb * 1024 * 1024 // files
    for n in range(files):
        path = root / f"d{n % 40}" / f"f{n}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(size))
    (root / "Dockerfile").write_text(DOCKERFILE)


def _time_tar(root: Path, check: ContextCheck | None) -> float:
    entries = context_entries(root, Path("Dockerfile"), workspace_root=root)
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        write_context_tar(sink, entries, dockerfile_path="Dockerfile", dockerfile_text=DOCKERFILE, check=check)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make_context(root, args.files, args.mb)
        entries = context_entries(root, Path("Dockerfile"), workspace_root=root)
        hash_file = file_hasher("xxh3")
        hashes = {e.path: hash_file(e.abs_path) for e in entries if e.kind.value == "file"}
        dockerfile_hash = hash_bytes(DOCKERFILE.encode(), "xxh3")
        expected = digest_manifest(inputs_manifest(dockerfile_hash, entries, hashes), "xxh3")
        check = ContextCheck(
            node="bench",
            algorithm="xxh3",
            expected=expected,
            dockerfile_hash=dockerfile_hash,
        )
        plain, checked = [], []
        for _ in range(args.rounds):  # interleaved, so that drift in the machine's speed hits both
            plain.append(_time_tar(root, None))
            checked.append(_time_tar(root, check))
    base, proven = median_of(plain), median_of(checked)
    print(f"{machine()}; a context of {args.files} files, {args.mb} MB; median of {args.rounds} rounds")
    print(
        table(
            [
                ["context tar", "median", "ratio"],
                ["written, unchecked (the baseline)", f"{base:.3f} s", "1.00x"],
                ["written and proven (hashed, digest compared)", f"{proven:.3f} s", f"{proven / base:.2f}x"],
            ]
        )
    )


if __name__ == "__main__":
    main()
