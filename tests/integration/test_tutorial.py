"""docs/tutorial.md, run as written: every shell block, in order, on the real engine and a real registry.

The blocks are the fenced blocks marked ``sh``, ``bash`` or ``console``. A ``sh``/``bash`` block runs
as it is; in a ``console`` block the commands are the lines after ``$ `` (a line ending in ``\\``
continues on the next one) and every other line is output shown to the reader, not checked.

Each block runs in a bash process of its own with ``set -e``, in the working directory and with the
exported variables the previous block left (a reader's one terminal), starting in an empty
directory that holds ``orchestrator``, a link to this checkout (the tutorial's "clone"). The
environment: ``PATH`` starts with this checkout's ``.venv/bin``, ``XDG_CACHE_HOME`` is a directory
of the test's own, and the registry address the tutorial spells ``127.0.0.1:5000`` is replaced by
a free port's.

Markers, on the line right before a block's opening fence (HTML comments: invisible on a rendered
page, so the text must say the same in words):

- ``<!-- exit: N -->``: the block must exit with code N (its last command fails with N); without
  it, every block must exit 0;
- ``<!-- tutorial-test: skip (why) -->``: the block is not run (only the install block, which the
  test replaces with this checkout's environment).

Processes a block leaves running (the tutorial's registry) are stopped at the end. Takes about
two minutes here (arm64 builds and tests under QEMU included).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.engine.docker import DockerExecutor
from tests.registry_server import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
TUTORIAL_REGISTRY = "127.0.0.1:5000"
BLOCK_TIMEOUT_S = 600
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!--\s*(exit:\s*(?P<code>\d+)|tutorial-test:\s*(?P<skip>skip)\b[^>]*)\s*-->\s*$")
SHELLS = ("sh", "bash", "console")


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    line: int  # of the opening fence, 1-based
    script: str
    exit_code: int = 0
    skip: bool = False


def shell_blocks(text: str) -> list[Block]:
    """The tutorial's shell blocks, in order, with their expected exit codes (see the module docstring)."""
    blocks = []
    for match in FENCE.finditer(text):
        language, body = match.group(1), match.group(2)
        if language not in SHELLS:
            continue
        before = text[: match.start()].rstrip("\n").rpartition("\n")[2]
        marker = MARKER.search(before)
        blocks.append(
            Block(
                line=text.count("\n", 0, match.start()) + 1,
                script=_console_commands(body) if language == "console" else body,
                exit_code=int(marker.group("code")) if marker and marker.group("code") else 0,
                skip=bool(marker and marker.group("skip")),
            )
        )
    return blocks


def _console_commands(body: str) -> str:
    commands: list[str] = []
    continued = False
    for line in body.splitlines():
        if continued:
            commands.append(line)
        elif line.startswith("$ "):
            commands.append(line[2:])
        else:
            continue
        continued = line.endswith("\\")
    return "\n".join(commands) + "\n"


def test_shell_blocks_reads_commands_exit_codes_and_skips() -> None:
    text = (
        "<!-- tutorial-test: skip (install) -->\n```sh\npip install x\n```\n\n"
        "<!-- exit: 2 -->\n```console\n$ orchestrator build \\\n    --registry r\nERROR no\n$ true\n```\n"
        "```text\nnot run\n```\n```bash\necho hi\n```\n"
    )
    assert shell_blocks(text) == [
        Block(line=2, script="pip install x\n", skip=True),
        Block(line=7, script="orchestrator build \\\n    --registry r\ntrue\n", exit_code=2),
        Block(line=16, script="echo hi\n"),
    ]


def test_tutorial_runs_as_written(docker_engine: DockerExecutor, arm64_busybox: Path, tmp_path: Path) -> None:
    from tests.integration.conftest import _unavailable
    from tests.registry_server import registry_binary

    if registry_binary() is None:
        _unavailable("the tutorial needs docker-registry (apt-get install docker-registry)")
    registry = f"127.0.0.1:{free_port()}"
    home = tmp_path / "reader"
    home.mkdir()
    (home / "orchestrator").symlink_to(ROOT)
    state = tmp_path / "state"
    state.mkdir()
    (state / "pwd").write_text(str(home))
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    }
    env.pop("CI", None)  # the tutorial's commands see what a reader's terminal has
    (state / "env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    blocks = shell_blocks(TUTORIAL.read_text())
    assert any(b.exit_code != 0 for b in blocks) and sum(not b.skip for b in blocks) > 10
    groups: list[int] = []
    try:
        for number, block in enumerate(blocks, 1):
            if block.skip:
                continue
            script = block.script.replace(TUTORIAL_REGISTRY, registry)
            code, output, seconds = _run_block(script, state, tmp_path / f"block-{number}.log", groups)
            print(f"docs/tutorial.md:{block.line}: exit {code} in {seconds:.1f}s", file=sys.stderr)
            assert code == block.exit_code, (
                f"docs/tutorial.md:{block.line}: the block exited {code}, the text says {block.exit_code}\n"
                f"--- block ---\n{script}--- output ---\n{output}"
            )
    finally:
        _stop(groups)
        _remove_registry_images(registry)


def _run_block(script: str, state: Path, log: Path, groups: list[int]) -> tuple[int, str, float]:
    """Run one block as a reader's terminal would (see the module docstring): exit code, output, seconds."""
    save = f"__rc=$?; pwd > {shlex.quote(str(state / 'pwd'))}; export -p > {shlex.quote(str(state / 'env'))}"
    wrapper = (
        f"source {shlex.quote(str(state / 'env'))}\n"
        f'cd "$(cat {shlex.quote(str(state / "pwd"))})"\n'
        f"trap '{save}; exit $__rc' EXIT\n"
        "set -e\n" + script
    )
    started = time.monotonic()
    with log.open("w") as out:  # a file, not a pipe: a background process keeps a pipe open
        process = subprocess.Popen(
            ["bash", "-c", wrapper],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        groups.append(process.pid)
        try:
            code = process.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = -9
    return code, log.read_text(errors="replace"), time.monotonic() - started


def _stop(groups: list[int]) -> None:
    """Stop what the blocks left running (their process groups), TERM then KILL."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        alive = [g for g in groups if _signal(g, signum)]
        if not alive:
            return
        time.sleep(1.0)


def _signal(group: int, signum: int) -> bool:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def _remove_registry_images(registry: str) -> None:
    """Untag what the tutorial pulled from its (now stopped) registry."""
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={registry}/*"],
        capture_output=True,
        text=True,
        check=False,
    )
    names = listed.stdout.split()
    if names:
        subprocess.run(["docker", "rmi", *names], capture_output=True, check=False)
