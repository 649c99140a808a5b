"""A runaway WORKSPACE, BUILD or .star file is stopped: by its time or memory budget, or by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.errors import BuildFileError, Location
from orchestrator.workspace import loadcache
from orchestrator.workspace.buildfile import budget, loader
from orchestrator.workspace.buildfile.budget import Budget, Progress
from tests.workspaces import ScratchWorkspace

RUNAWAY_LOOP = "for i in range(2147483647):\n    for j in range(2147483647):\n        pass\n"
STRING_BOMB = 's = "x"\nfor i in range(64):\n    s = s + s\n'
SMALL_BUDGET = "workspace(eval_timeout = 1, eval_memory_mb = 256)\n"


def one_error(ws: ScratchWorkspace, *args: str) -> str:
    result = ws.run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("ERROR ") and result.stderr.count("ERROR ") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def test_runaway_loop_in_a_build_file_fails_naming_it_after_eval_timeout(workspace: ScratchWorkspace) -> None:
    workspace.write({"WORKSPACE": SMALL_BUDGET, "app/BUILD": RUNAWAY_LOOP})
    started = time.monotonic()
    message = one_error(workspace, "query", "buildorder")
    assert time.monotonic() - started < 10
    assert message.startswith("ERROR app/BUILD: evaluation took longer than 1 s")
    assert "workspace(eval_timeout = SECONDS)" in message


def test_string_doubling_bomb_fails_naming_the_file(workspace: ScratchWorkspace) -> None:
    workspace.write({"WORKSPACE": SMALL_BUDGET, "app/BUILD": STRING_BOMB})
    message = one_error(workspace, "hash")
    assert message.startswith("ERROR app/BUILD: evaluation needed more than 256 MiB of memory")
    assert "workspace(eval_memory_mb = MIB)" in message


def test_bomb_in_a_loaded_star_file_names_it_and_the_build_file_loading_it(workspace: ScratchWorkspace) -> None:
    workspace.write(
        {"WORKSPACE": SMALL_BUDGET, "tools/defs.star": STRING_BOMB, "app/BUILD": 'load("//tools:defs.star", "s")\n'}
    )
    message = one_error(workspace, "hash")
    assert message.startswith(
        "ERROR tools/defs.star: evaluation needed more than 256 MiB of memory (loaded by app/BUILD)"
    )


def test_each_build_file_has_its_own_deadline(workspace: ScratchWorkspace) -> None:
    slow = "n = 0\nfor i in range(300000):\n    n += i\n"  # a fraction of a second each, seconds together
    workspace.write({"WORKSPACE": SMALL_BUDGET})
    workspace.write({f"p{i}/BUILD": slow for i in range(8)})
    assert workspace.run("query", "buildorder").exit_code == 3  # nothing to order, but all evaluated


def test_workspace_file_is_evaluated_under_the_default_budget(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "WORKSPACE_BUDGET", Budget(timeout_s=1, memory_mb=256, settable=False))
    workspace.write({"WORKSPACE": "workspace(eval_timeout = 600)\n" + RUNAWAY_LOOP})
    message = one_error(workspace, "query", "buildorder")
    assert message.startswith("ERROR WORKSPACE: evaluation took longer than 1 s")
    assert "WORKSPACE itself is evaluated under the default limits" in message
    workspace.write({"WORKSPACE": STRING_BOMB})
    assert one_error(workspace, "hash").startswith("ERROR WORKSPACE: evaluation needed more than 256 MiB")


@pytest.mark.parametrize(
    ("text", "bounded"),
    [
        ("", True),
        ('# a comment\nworkspace(\n    name = "x",  # why\n    platforms = ["linux/amd64"],\n)\n', True),
        ('x = {"a": (1, 2)}\nworkspace(eval_timeout = 1.5, hermetic = True, registry = None)\n', True),
        ('workspace(cache_dir = {"a": "b"}["a"])\n', False),  # bounded, but only literals and calls are let through
        ('p = ["linux/amd64"]\nworkspace(platforms = p)\n', False),  # a name: could be anything
        ('workspace(name = "x" * 3)\n', False),
        ('workspace(name = f"{x}")\n', False),
        ("workspace(name = str(1))\n", False),
        ('load("//:defs.star", "x")\n', False),
        (STRING_BOMB, False),
        (RUNAWAY_LOOP, False),
        ("def f():\n    return f()\n", False),
        ('workspace(name = "unterminated)\n', False),
    ],
)
def test_only_a_workspace_file_of_literals_is_evaluated_without_a_child(text: str, bounded: bool) -> None:
    assert loader.literals_only(text) is bounded


def test_workspace_file_of_literals_does_not_fork(workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_child(work: object, limits: Budget) -> None:
        raise AssertionError("forked")

    workspace.write({"WORKSPACE": 'workspace(name = "w", eval_timeout = 5)\n'})
    monkeypatch.setattr(budget, "run", no_child)
    assert loader.load_settings(workspace.root).eval_timeout_s == 5


def test_defaults_are_60_seconds_and_2_gib() -> None:
    assert loader.WORKSPACE_BUDGET.timeout_s == 60 and loader.WORKSPACE_BUDGET.memory_mb == 2048
    assert budget.DEFAULT_BUDGET.timeout_s == 60 and budget.DEFAULT_BUDGET.memory_mb == 2048


def test_rule_errors_keep_their_location_through_the_child(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'image(name = "app", colour = 1)\n', "app/Dockerfile": "FROM scratch\n"})
    assert one_error(workspace, "hash").startswith("ERROR app/BUILD:1:1: image(name='app'): unknown attribute 'colour'")


def test_build_file_that_is_not_utf8_names_the_file(workspace: ScratchWorkspace) -> None:
    workspace.path("app").mkdir()
    workspace.path("app/BUILD").write_bytes(b'image(name = "\xff")\n')
    assert one_error(workspace, "hash").startswith("ERROR app/BUILD: not UTF-8 text")


# --- Ctrl-C and SIGTERM: a real signal to a real process --------------------------------------------


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"  # a zombie: dead, not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc to find the evaluating child")
@pytest.mark.parametrize(
    ("command", "signum", "exit_code", "message"),
    [
        ("query", signal.SIGINT, 130, "ERROR interrupted while evaluating app/BUILD\n"),
        ("query", signal.SIGTERM, 143, "ERROR terminated while evaluating app/BUILD\n"),
        ("build", signal.SIGTERM, 143, "ERROR terminated while evaluating app/BUILD\n"),  # build's own handler
    ],
)
def test_signal_stops_a_runaway_evaluation_at_once(
    workspace: ScratchWorkspace, command: str, signum: int, exit_code: int, message: str
) -> None:
    workspace.write({"app/BUILD": RUNAWAY_LOOP})  # the default budget: a minute
    argv = [sys.executable, "-m", "orchestrator", "--workspace", str(workspace.root)]
    process = subprocess.Popen(
        [*argv, "--cache-dir", str(workspace.cache_dir), command, *(["buildorder"] if command == "query" else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not children(process.pid):  # the child evaluating WORKSPACE, then the one evaluating app/BUILD
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        time.sleep(1.0)  # well into app/BUILD
        evaluating = children(process.pid)
        signalled = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert time.monotonic() - signalled < 2
    assert process.returncode == exit_code
    assert stderr == message
    assert all(gone(pid) for pid in evaluating)


# --- budget.run itself ------------------------------------------------------------------------------


def test_run_returns_what_the_work_returns() -> None:
    assert budget.run(lambda progress: {"x": (1, "y")}, Budget()) == {"x": (1, "y")}


def test_run_raises_the_work_s_error_with_its_location() -> None:
    def work(progress: Progress) -> None:
        raise BuildFileError("bad", location=Location("a/BUILD", 3, 4))

    with pytest.raises(BuildFileError) as caught:
        budget.run(work, Budget())
    assert str(caught.value) == "a/BUILD:3:4: bad"


def test_deadline_is_per_top_level_file_and_the_error_names_the_innermost() -> None:
    def work(progress: Progress) -> None:
        for name in ("a/BUILD", "b/BUILD"):  # 0.2 s each: together over the budget, each within it
            progress.enter(name)
            time.sleep(0.2)
            progress.leave()
        progress.enter("c/BUILD")
        progress.enter("lib/x.star")
        time.sleep(10)

    started = time.monotonic()
    with pytest.raises(BuildFileError) as caught:
        budget.run(work, Budget(timeout_s=0.3))
    assert time.monotonic() - started < 3
    assert str(caught.value).startswith("lib/x.star: evaluation took longer than 0.3 s (loaded by c/BUILD)")


def test_memory_error_in_the_child_is_the_memory_budget() -> None:
    def work(progress: Progress) -> bytearray:
        progress.enter("a/BUILD")
        return bytearray(512 << 20)

    with pytest.raises(BuildFileError, match=r"^a/BUILD: evaluation needed more than 64 MiB"):
        budget.run(work, Budget(memory_mb=64))


def test_a_bug_in_the_child_shows_its_traceback() -> None:
    def work(progress: Progress) -> None:
        raise ValueError("a bug")

    with pytest.raises(RuntimeError, match=r"(?s)failed in the child process:.*ValueError: a bug"):
        budget.run(work, Budget())


def test_a_child_that_dies_is_one_error_naming_the_file() -> None:
    def work(progress: Progress) -> None:
        progress.enter("a/BUILD")
        os.kill(os.getpid(), signal.SIGSEGV)

    with pytest.raises(
        BuildFileError, match=r"^a/BUILD: the process evaluating a/BUILD ended unexpectedly \(signal SIGSEGV\)"
    ):
        budget.run(work, Budget())


# --- symlinks leaving the workspace (item 9) --------------------------------------------------------


def outside(ws: ScratchWorkspace, name: str, text: str) -> Path:
    path = ws.root.parent / "elsewhere" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["BUILD", "BUILD.bazel"])
def test_build_file_symlinked_outside_the_workspace_is_refused(workspace: ScratchWorkspace, name: str) -> None:
    workspace.write({"app/Dockerfile": "FROM scratch\n"})
    workspace.path(f"app/{name}").symlink_to(outside(workspace, name, 'image(name = "app")\n'))
    message = one_error(workspace, "query", "buildorder")
    assert f"BUILD file {workspace.path(f'app/{name}')} resolves outside the workspace" in message


def test_star_file_symlinked_outside_the_workspace_is_refused(workspace: ScratchWorkspace) -> None:
    workspace.write({"app/BUILD": 'load("//tools:defs.star", "x")\n'})
    workspace.path("tools").mkdir()
    workspace.path("tools/defs.star").symlink_to(outside(workspace, "defs.star", "x = 1\n"))
    message = one_error(workspace, "query", "buildorder")
    assert "tools/defs.star resolves outside the workspace" in message


def test_workspace_file_symlinked_outside_the_workspace_is_refused(workspace: ScratchWorkspace) -> None:
    workspace.path("WORKSPACE").unlink()
    workspace.path("WORKSPACE").symlink_to(outside(workspace, "WORKSPACE", ""))
    message = one_error(workspace, "query", "buildorder")
    assert f"WORKSPACE file {workspace.path('WORKSPACE')} resolves outside the workspace" in message


def test_build_file_symlinked_inside_the_workspace_is_read_and_its_edits_seen(
    workspace: ScratchWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loadcache, "RACY_WINDOW_NS", 0)  # so the load cache answers for files seconds old
    workspace.write({"shared/app.bzl": 'image(name = "one")\n', "app/Dockerfile": "FROM scratch\n"})
    workspace.path("app/BUILD").symlink_to(workspace.path("shared/app.bzl"))
    assert workspace.lines("query", "buildorder") == ["//app:one"]
    time.sleep(0.01)
    workspace.write({"shared/app.bzl": 'image(name = "two")\n'})  # the target changes, the link does not
    assert workspace.lines("query", "buildorder") == ["//app:two"]
