"""The journal of build step containers: what a build records, and what a later sweep removes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.engine import leftovers
from orchestrator.engine.leftovers import BuildJournal, Leftover

ENGINE = "unix:///var/run/docker.sock"


class Remover:
    """A fake engine: the containers it holds; ``remove`` is the executor's ``docker rm -f``."""

    def __init__(self, *, answers: bool = True) -> None:
        self.answers = answers
        self.removed: list[str] = []

    def __call__(self, container_id: str) -> bool:
        if not self.answers:
            return False
        self.removed.append(container_id)
        return True


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def write_entry(directory: Path, pid: int, ids: list[str], **header: object) -> Path:
    fields = {"pid": pid, "started": leftovers._process_start(pid), "host": socket.gethostname(), "engine": ENGINE}
    fields.update(header)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pid}-0{leftovers.SUFFIX}"
    path.write_text(json.dumps(fields) + "\n" + "".join(f"{i}\n" for i in ids))
    return path


def test_a_build_journals_each_step_container_until_it_ends_normally(tmp_path: Path) -> None:
    journal = BuildJournal(tmp_path, ENGINE)
    with journal.entry() as entry:
        entry.note("Step 2/3 : RUN make\n")
        assert list(tmp_path.iterdir()) == []  # no file before the first container
        entry.note(" ---> Running in 3f2a0b1c4d5e\n")
        entry.note(" ---> 9c0d41e2aa17\n")  # a layer, not a container
        entry.note(" ---> Running in 77aa00bb11cc\n")
        (path,) = tmp_path.iterdir()
        header, *ids = path.read_text().splitlines()
        assert ids == ["3f2a0b1c4d5e", "77aa00bb11cc"]
        assert json.loads(header)["engine"] == ENGINE
    assert entry.container_ids == ["3f2a0b1c4d5e", "77aa00bb11cc"]
    assert list(tmp_path.iterdir()) == []


def test_an_entry_stays_when_the_build_raises_and_this_process_then_sweeps_it(tmp_path: Path) -> None:
    journal = BuildJournal(tmp_path, ENGINE)
    remover = Remover()
    with pytest.raises(RuntimeError), journal.entry() as entry:
        entry.note(" ---> Running in 3f2a0b1c4d5e\n")
        assert journal.sweep(remover) == []  # a build still running is never swept
        raise RuntimeError("the connection to the engine broke")
    assert len(list(tmp_path.iterdir())) == 1
    assert journal.sweep(remover) == [Leftover(container_id="3f2a0b1c4d5e", pid=leftovers.os.getpid())]
    assert remover.removed == ["3f2a0b1c4d5e"]
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_exactly_the_containers_of_a_dead_process(tmp_path: Path, dead_pid: int) -> None:
    write_entry(tmp_path, dead_pid, ["3f2a0b1c4d5e", "77aa00bb11cc"], started="1")
    remover = Remover()
    done = BuildJournal(tmp_path, ENGINE).sweep(remover)
    assert remover.removed == ["3f2a0b1c4d5e", "77aa00bb11cc"]
    assert [d.container_id for d in done] == remover.removed
    assert list(tmp_path.iterdir()) == []


def test_sweep_leaves_a_running_build_alone(tmp_path: Path, live_pid: int) -> None:
    path = write_entry(tmp_path, live_pid, ["3f2a0b1c4d5e"])
    remover = Remover()
    assert BuildJournal(tmp_path, ENGINE).sweep(remover) == []
    assert remover.removed == []
    assert path.exists()


def test_a_reused_pid_does_not_keep_a_dead_build_entry(tmp_path: Path, live_pid: int) -> None:
    write_entry(tmp_path, live_pid, ["3f2a0b1c4d5e"], started="1")  # that pid, started at another time
    remover = Remover()
    BuildJournal(tmp_path, ENGINE).sweep(remover)
    assert remover.removed == ["3f2a0b1c4d5e"]


@pytest.mark.parametrize("header", [{"engine": "tcp://10.0.0.7:2375"}, {"host": "another-host"}])
def test_sweep_leaves_entries_of_other_engines_and_hosts(tmp_path: Path, dead_pid: int, header: dict[str, str]) -> None:
    path = write_entry(tmp_path, dead_pid, ["3f2a0b1c4d5e"], **header)
    remover = Remover()
    assert BuildJournal(tmp_path, ENGINE).sweep(remover) == []
    assert remover.removed == []
    assert path.exists()


def test_an_entry_stays_until_the_engine_has_removed_its_containers(tmp_path: Path, dead_pid: int) -> None:
    path = write_entry(tmp_path, dead_pid, ["3f2a0b1c4d5e"])
    journal = BuildJournal(tmp_path, ENGINE)
    assert journal.sweep(Remover(answers=False)) == []
    assert path.exists()
    remover = Remover()
    journal.sweep(remover)
    assert remover.removed == ["3f2a0b1c4d5e"]
    assert not path.exists()


def test_a_torn_line_and_a_foreign_file_are_never_taken_for_containers(tmp_path: Path, dead_pid: int) -> None:
    write_entry(tmp_path, dead_pid, ["3f2a0b1c4d5e", "77aa0"])  # the process died writing the second ID
    foreign = tmp_path / f"notes{leftovers.SUFFIX}"
    foreign.write_text("3f2a0b1c4d5e\n")
    remover = Remover()
    BuildJournal(tmp_path, ENGINE).sweep(remover)
    assert remover.removed == ["3f2a0b1c4d5e"]
    assert foreign.exists()


def test_without_a_directory_nothing_is_kept_or_swept(tmp_path: Path) -> None:
    journal = BuildJournal(None, ENGINE)
    with pytest.raises(RuntimeError), journal.entry() as entry:
        entry.note(" ---> Running in 3f2a0b1c4d5e\n")
        raise RuntimeError
    assert entry.container_ids == ["3f2a0b1c4d5e"]
    assert journal.sweep(Remover()) == []


def test_an_unwritable_journal_never_fails_the_build(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the journal's directory should be")
    with BuildJournal(blocker / "build-containers", ENGINE).entry() as entry:
        entry.note(" ---> Running in 3f2a0b1c4d5e\n")
    assert entry.container_ids == ["3f2a0b1c4d5e"]
