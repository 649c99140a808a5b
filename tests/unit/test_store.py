"""The local store survives its own damage: a damaged store is moved aside (one warning) and the
command goes on with a fresh one; what the user must fix is one ERROR line, never a traceback."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.cache import store as store_module
from orchestrator.cache.store import Store
from orchestrator.errors import CacheError, CacheFullError
from tests.workspaces import ScratchWorkspace

BIG = {"pad": "y" * 100_000}  # above diskcache's 32 KiB: kept in a value file, not in cache.db


@pytest.fixture
def warnings_seen() -> Iterator[list[str]]:
    """What the store reported through its warning handler during the test."""
    seen: list[str] = []
    previous = store_module.set_warning_handler(seen.append)
    yield seen
    store_module.set_warning_handler(previous)


def value(i: int) -> dict[str, object]:
    return {"i": i, "pad": "x" * 200}


def filled(cache_dir: Path, count: int = 500) -> Path:
    """A closed store holding ``k0``..``k<count-1>`` and ``big``; returns its cache.db."""
    with Store(cache_dir) as s:
        for i in range(count):
            s.set(f"k{i}", value(i))
        s.set("big", BIG)
    return cache_dir / "store" / "cache.db"


def damaged_dirs(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("store.damaged-*"))


def write_garbage(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 1024)


def truncate_db(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def truncate_value_file(db: Path) -> None:
    (value_file,) = db.parent.rglob("*.val")
    os.truncate(value_file, 5000)


def undecodable_row(db: Path) -> None:
    with sqlite3.connect(db) as con:
        con.execute("UPDATE Cache SET value = ? WHERE key = ?", ('{"i": 7, "pad', "k7"))
    con.close()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (write_garbage, "file is not a database"),
        (truncate_db, "database disk image is malformed"),
        (truncate_value_file, "the value of 'big' does not decode"),
        (undecodable_row, "the value of 'k7' does not decode"),
    ],
)
def test_damaged_store_is_moved_aside_once_and_a_fresh_one_used(
    tmp_path: Path, warnings_seen: list[str], damage: Callable[[Path], None], reason: str
) -> None:
    damage(filled(tmp_path))
    with Store(tmp_path) as s:
        found = {key: s.get(key) for key in ["big", *(f"k{i}" for i in range(500))]}
        s.set("after", [1])
        assert s.get("after") == [1]
    (moved,) = damaged_dirs(tmp_path)
    assert (moved / "cache.db").is_file()  # kept for a post-mortem, not deleted
    assert len(warnings_seen) == 1
    assert str(tmp_path / "store") in warnings_seen[0]
    assert str(moved) in warnings_seen[0]
    assert reason in warnings_seen[0]
    assert "\n" not in warnings_seen[0]
    # whatever was read before the damage surfaced is the truth; after it, the fresh store is empty
    assert all(v is None or v == (BIG if k == "big" else value(int(k[1:]))) for k, v in found.items())
    with Store(tmp_path) as s:
        assert s.get("after") == [1]
        assert s.get("k7") is None
    assert len(warnings_seen) == 1


def test_missing_value_file_is_a_miss_not_damage(tmp_path: Path, warnings_seen: list[str]) -> None:
    (value_file,) = filled(tmp_path, count=1).parent.rglob("*.val")
    value_file.unlink()
    with Store(tmp_path) as s:
        assert s.get("big") is None
        assert s.get("k0") == value(0)
    assert warnings_seen == []
    assert damaged_dirs(tmp_path) == []


def test_emptied_database_is_just_an_empty_store(tmp_path: Path, warnings_seen: list[str]) -> None:
    filled(tmp_path).write_bytes(b"")
    with Store(tmp_path) as s:
        assert s.get("k0") is None
    assert warnings_seen == []


def test_a_store_open_while_another_quarantines_writes_to_the_fresh_one(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    undecodable_row(filled(tmp_path))
    first, second = Store(tmp_path), Store(tmp_path)
    assert second.get("k7") is None  # damage seen: quarantined, fresh store
    assert first.get("k1") == value(1)  # still reads the moved store, no error
    first.set("written-by-first", 1)  # a write notices the move and goes to the live store
    assert second.get("written-by-first") == 1
    assert first.get("k7") is None
    first.close()
    second.close()
    assert len(warnings_seen) == 1
    assert len(damaged_dirs(tmp_path)) == 1


def test_a_store_that_finds_damage_someone_already_moved_does_not_move_the_fresh_one(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    undecodable_row(filled(tmp_path))
    first, second = Store(tmp_path), Store(tmp_path)
    assert second.get("k7") is None
    second.set("fresh", 1)
    assert first.get("k7") is None  # the moved store's damage: reopen the live one, move nothing
    assert first.get("fresh") == 1
    first.close()
    second.close()
    assert len(warnings_seen) == 1
    assert len(damaged_dirs(tmp_path)) == 1


def test_threads_and_stores_hitting_damage_at_once_quarantine_it_once(tmp_path: Path, warnings_seen: list[str]) -> None:
    truncate_db(filled(tmp_path, count=2000))
    shared = Store(tmp_path)
    stores = [shared, shared, shared, Store(tmp_path), Store(tmp_path), Store(tmp_path)]
    start = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def read_all(s: Store) -> None:
        start.wait()
        try:
            for i in range(2000):
                s.get(f"k{i}")
            s.set("done", True)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=read_all, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in set(stores):
        s.close()
    assert failures == []
    assert len(warnings_seen) == 1
    assert len(damaged_dirs(tmp_path)) == 1


def _os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _sqlite_error(code: int, message: str) -> sqlite3.Error:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (_sqlite_error(sqlite3.SQLITE_FULL, "database or disk is full"), CacheFullError),
        (_os_error(errno.ENOSPC), CacheFullError),
        (_os_error(errno.EDQUOT), CacheFullError),
        (_sqlite_error(sqlite3.SQLITE_BUSY, "database is locked"), CacheError),
        (_sqlite_error(sqlite3.SQLITE_READONLY, "attempt to write a readonly database"), CacheError),
        (_os_error(errno.EACCES), CacheError),
    ],
)
def test_what_the_user_must_fix_is_a_cache_error_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: Exception, expected: type[CacheError]
) -> None:
    s = Store(tmp_path)

    def fail(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(s._cache, "set", fail)
    with pytest.raises(CacheError) as caught:
        s.set("k", 1)
    assert type(caught.value) is expected
    assert caught.value.path == str(tmp_path / "store")
    assert str(tmp_path / "store") in str(caught.value)
    assert "--cache-dir" in str(caught.value)
    assert caught.value.exit_code == 2
    s.close()


def test_cache_errors_survive_pickling_out_of_a_forked_worker() -> None:
    error = pickle.loads(pickle.dumps(CacheFullError("no space", "/c/store")))
    assert type(error) is CacheFullError
    assert (error.message, error.path) == ("no space", "/c/store")


WRITER = """
import sys
from pathlib import Path
from orchestrator.cache.store import Store
s = Store(Path(sys.argv[1]))
i = 0
while True:
    s.set(f"k{i}", {"i": i, "pad": ("x" * 200) if i % 7 else ("y" * 50000)})
    if i == 20:
        print("writing", flush=True)
    i += 1
"""


@pytest.mark.parametrize("run", range(4))
def test_kill_9_while_writing_leaves_a_store_that_opens_and_reads(
    tmp_path: Path, warnings_seen: list[str], run: int
) -> None:
    with subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        time.sleep(0.05 + 0.1 * run)
        writer.send_signal(signal.SIGKILL)
    assert writer.returncode == -signal.SIGKILL
    with Store(tmp_path) as s:
        found = [s.get(f"k{i}") for i in range(100_000)]
    written = [v for v in found if v is not None]
    assert len(written) > 20
    # every record written is whole, and they are a prefix: nothing later survived without the earlier
    assert found[: len(written)] == [
        {"i": i, "pad": ("x" * 200) if i % 7 else ("y" * 50000)} for i in range(len(written))
    ]
    assert warnings_seen == []
    assert damaged_dirs(tmp_path) == []


# The CLI: one WARNING line, the command goes on; one ERROR line for what the user must fix.


def test_cli_on_a_damaged_cache_warns_once_and_computes_the_same_keys(family: ScratchWorkspace) -> None:
    keys = family.keys()
    write_garbage(family.cache_dir / "store" / "cache.db")
    result = family.run("hash")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("WARNING the local cache ")
    assert "file is not a database" in line
    assert str(family.cache_dir / "store.damaged-") in line
    assert family.keys() == keys
    again = family.run("query", "buildorder")
    assert again.exit_code == 0
    assert again.stderr == ""


def test_cli_with_a_cache_dir_that_is_a_file_is_one_error_line(family: ScratchWorkspace) -> None:
    family.cache_dir.write_text("not a directory\n")
    result = family.run("hash")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"ERROR cannot use the local cache {family.cache_dir / 'store'}: ")
    assert "--cache-dir" in line


def _many_targets(ws: ScratchWorkspace, count: int) -> None:
    files = {"WORKSPACE": 'workspace(platforms = ["linux/amd64"])\n'}
    for i in range(count):
        files[f"t{i}/BUILD"] = f'image(name = "t{i}")\n'
        files[f"t{i}/Dockerfile"] = f"FROM scratch\nCOPY f /f{i}\n"
        files[f"t{i}/f"] = f"{i}\n"
    ws.write(files)


def _orchestrator(ws: ScratchWorkspace, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "orchestrator"), "--workspace", str(ws.root)]
    command += ["--cache-dir", str(ws.cache_dir), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="hashing forks workers only with two cores or more")
def test_damage_found_by_a_forked_hashing_worker_is_one_warning(workspace: ScratchWorkspace) -> None:
    _many_targets(workspace, 80)  # parallel_inputs.MIN_TARGETS is 64
    first = _orchestrator(workspace, "hash")
    assert first.returncode == 0, first.stderr
    time.sleep(2.1)  # every context older than the stat cache's racy window: the next run reads records
    assert _orchestrator(workspace, "hash").stdout == first.stdout
    with sqlite3.connect(workspace.cache_dir / "store" / "cache.db") as con:
        # the stat records, read only by the workers (the load cache and the parent read others)
        damaged = con.execute("UPDATE Cache SET value = '{' WHERE key LIKE 'quick:tree:%'").rowcount
    con.close()
    assert damaged > 0
    result = _orchestrator(workspace, "hash")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == first.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith("WARNING the local cache ")
    assert len(damaged_dirs(workspace.cache_dir)) == 1


@pytest.mark.parametrize("run", range(3))
def test_two_invocations_on_one_damaged_cache_both_succeed_and_it_is_moved_once(
    family: ScratchWorkspace, run: int
) -> None:
    keys = family.keys()
    write_garbage(family.cache_dir / "store" / "cache.db")
    command = [str(Path(sys.executable).parent / "orchestrator"), "--workspace", str(family.root)]
    command += ["--cache-dir", str(family.cache_dir), "hash"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    assert all("Traceback" not in err for _, err in outputs)
    assert sum(err.count("WARNING ") for _, err in outputs) == 1
    assert all(out == outputs[0][0] for out, _ in outputs)
    assert len(damaged_dirs(family.cache_dir)) == 1
    assert family.keys() == keys


STEADY_WRITER = """
import sys, time
from pathlib import Path
from orchestrator.cache.store import Store
s = Store(Path(sys.argv[1]))
deadline = time.monotonic() + float(sys.argv[2])
i = 0
while time.monotonic() < deadline:
    s.set(f"w{i}", {"i": i, "pad": ("x" * 200) if i % 7 else ("y" * 50000)})
    s.get(f"w{i}")  # may miss right after the swap (a large value is read by path): never an error
    if i == 10:
        print("writing", flush=True)
    i += 1
s.close()
print(i, flush=True)
"""


@pytest.mark.parametrize("run", range(3))
def test_a_process_writing_while_another_quarantines_goes_on_without_an_error(
    tmp_path: Path, warnings_seen: list[str], run: int
) -> None:
    undecodable_row(filled(tmp_path, count=50))
    command = [sys.executable, "-c", STEADY_WRITER, str(tmp_path), "1.5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        time.sleep(0.1 * run)
        with Store(tmp_path) as s:
            assert s.get("k7") is None  # the damage: quarantined while the writer writes
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    written = int(out.strip())
    assert len(warnings_seen) == 1
    with Store(tmp_path) as s:
        fresh = [s.get(f"w{i}") for i in range(written)]
        s.set("after", 1)
    assert len(warnings_seen) == 1  # the fresh store is whole
    assert fresh[-1] == {"i": written - 1, "pad": ("x" * 200) if (written - 1) % 7 else ("y" * 50000)}
